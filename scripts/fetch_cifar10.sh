#!/usr/bin/env bash
# Downloads CIFAR-10's binary version into data/cifar10/ (or the folder given as DEST), checks the
# archive's published MD5 and unpacks it: DEST/cifar-10-batches-bin/ then holds data_batch_1..5.bin
# and test_batch.bin, which `ember_cifar10 --data DEST/cifar-10-batches-bin` reads (its default).
#
#   bash scripts/fetch_cifar10.sh [--archive FILE] [DEST]
#
# Source: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (162 MB), the official archive,
# whose MD5 c58f30108f718f92721af3b95e74349a is published on https://www.cs.toronto.edu/~kriz/cifar.html.
# Offline, the download fails within seconds (a short connect timeout), and the message says where
# to put an archive fetched elsewhere: DEST/cifar-10-binary.tar.gz, or any path given as --archive.
# A present archive is used instead of downloading. Files are moved into place only after the
# archive verifies and each batch file has its exact size (10000 records of 3073 bytes), so an
# interrupted or corrupt run never leaves a half-written file under a standard name. Re-running is a
# no-op once the files are there. Without a network at all, train on generated stand-in data:
#   build/examples/make_synthetic_cifar10 --out data/cifar10-synthetic
# (CIFAR10_URL overrides the address: the tests point it at a closed local port.)
set -euo pipefail

URL="${CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz}"
MD5=c58f30108f718f92721af3b95e74349a
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)
BATCH_BYTES=30730000  # 10000 records * (1 label byte + 3 * 32 * 32 pixels)

die() {
  echo "fetch_cifar10.sh: error: $*" >&2
  exit 1
}

archive=""
DEST=""
while (($#)); do
  case "$1" in
    --archive) archive=${2:?--archive needs a file}; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (usage: fetch_cifar10.sh [--archive FILE] [DEST])" ;;
    *) [[ -z "$DEST" ]] || die "more than one DEST given ('$DEST', '$1')"; DEST=$1; shift ;;
  esac
done
DEST="${DEST:-$ROOT/data/cifar10}"
BIN="$DEST/cifar-10-batches-bin"

# 1. Already there? Every batch file of the right size: done. A file of another size is an error
#    (not ours to delete: maybe other data was put there on purpose).
present=0
for f in "${FILES[@]}"; do
  if [[ -e "$BIN/$f" ]]; then
    size=$(stat -c %s "$BIN/$f")
    [[ "$size" == "$BATCH_BYTES" ]] ||
      die "$BIN/$f exists but has $size bytes, not CIFAR-10's $BATCH_BYTES; delete $BIN and re-run"
    present=$((present + 1))
  fi
done
if ((present == ${#FILES[@]})); then
  echo "CIFAR-10: all ${#FILES[@]} batch files present in $BIN"
  exit 0
fi

command -v md5sum >/dev/null || die "md5sum not found (coreutils)"
mkdir -p "$DEST"
work="$(mktemp -d "$DEST/.fetch_cifar10.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# 2. The archive: --archive, else DEST/cifar-10-binary.tar.gz when present, else a download.
if [[ -z "$archive" && -f "$DEST/cifar-10-binary.tar.gz" ]]; then archive="$DEST/cifar-10-binary.tar.gz"; fi
if [[ -n "$archive" ]]; then
  [[ -f "$archive" ]] || die "--archive $archive: no such file"
  echo "CIFAR-10: using the archive $archive"
else
  command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
  echo "CIFAR-10: downloading $URL (162 MB)"
  if ! curl -fSL --progress-bar --connect-timeout 10 --retry 0 -o "$work/cifar-10-binary.tar.gz" "$URL"; then
    die "cannot download $URL (offline, or the server refused). On a machine with network, download" \
        "that file (MD5 $MD5) and put it at $DEST/cifar-10-binary.tar.gz (or pass --archive FILE), then" \
        "re-run this script. Without the real data: build/examples/make_synthetic_cifar10 --out" \
        "data/cifar10-synthetic writes a labelled synthetic stand-in (ember_cifar10 --data data/cifar10-synthetic)."
  fi
  archive="$work/cifar-10-binary.tar.gz"
fi

# 3. Verify, unpack in the scratch folder, check every batch file, move them into place.
md5=$(md5sum "$archive" | cut -d' ' -f1)
[[ "$md5" == "$MD5" ]] ||
  die "MD5 MISMATCH: $archive has MD5 $md5, not the published $MD5 of cifar-10-binary.tar.gz; nothing was installed"
tar -xzf "$archive" -C "$work" || die "cannot unpack $archive"
for f in "${FILES[@]}" batches.meta.txt; do
  [[ -f "$work/cifar-10-batches-bin/$f" ]] || die "$archive has no cifar-10-batches-bin/$f"
done
for f in "${FILES[@]}"; do
  size=$(stat -c %s "$work/cifar-10-batches-bin/$f")
  [[ "$size" == "$BATCH_BYTES" ]] || die "$archive: cifar-10-batches-bin/$f has $size bytes, not $BATCH_BYTES"
done
mkdir -p "$BIN"
for f in "${FILES[@]}" batches.meta.txt readme.html; do
  [[ -f "$work/cifar-10-batches-bin/$f" ]] && mv -f "$work/cifar-10-batches-bin/$f" "$BIN/$f"
done
echo "CIFAR-10: ready in $BIN (archive MD5 verified)"
