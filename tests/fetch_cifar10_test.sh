#!/usr/bin/env bash
# ctest: scripts/fetch_cifar10.sh without a network. The download fails at once (CIFAR10_URL points at
# a closed local port) with a message saying where to put the archive; an archive whose MD5 is not
# the published one installs nothing; a batch file of the wrong size is refused; six of the right
# size (sparse files) count as present. Usage: fetch_cifar10_test.sh <path to scripts/fetch_cifar10.sh>
set -euo pipefail
script=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; sed 's/^/    | /' "$dir/out"; exit 1; }

# expect_error PATTERN ARGS...: exit 1 within 30 s, PATTERN in the output.
expect_error() {
  local pattern=$1 rc=0
  shift
  timeout 30 env CIFAR10_URL=http://127.0.0.1:9/cifar-10-binary.tar.gz bash "$script" "$@" >"$dir/out" 2>&1 || rc=$?
  ((rc == 1)) || fail "exit $rc, expected 1: $*"
  grep -Eq -- "$pattern" "$dir/out" || fail "no /$pattern/ in the output of: $*"
  echo "ok: $* -> $(grep -Em1 -- "$pattern" "$dir/out" | cut -c1-140)"
}

expect_error "cannot download .*put it at $dir/offline/cifar-10-binary.tar.gz" "$dir/offline"
grep -q "make_synthetic_cifar10" "$dir/out" || fail "the offline message does not name the synthetic data tool"
[ -z "$(ls -A "$dir/offline")" ] || fail "the failed download left files: $(ls -A "$dir/offline")"

echo "not the archive" >"$dir/fake.tar.gz"
expect_error "MD5 MISMATCH: .*fake.tar.gz has MD5 [0-9a-f]{32}, not the published c58f30108f718f92721af3b95e74349a" \
  --archive "$dir/fake.tar.gz" "$dir/md5"
[ ! -e "$dir/md5/cifar-10-batches-bin" ] || fail "a bad archive installed something"
# An archive already in DEST is used (and checked) rather than downloading.
mkdir -p "$dir/local" && cp "$dir/fake.tar.gz" "$dir/local/cifar-10-binary.tar.gz"
expect_error "MD5 MISMATCH: $dir/local/cifar-10-binary.tar.gz" "$dir/local"
expect_error "no such file" --archive "$dir/nope.tar.gz" "$dir/x"

mkdir -p "$dir/have/cifar-10-batches-bin"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  truncate -s 30730000 "$dir/have/cifar-10-batches-bin/$f.bin"
done
bash "$script" "$dir/have" >"$dir/out" 2>&1 || fail "six full-size batch files were not accepted"
grep -q "all 6 batch files present" "$dir/out" || fail "no 'present' message"
truncate -s 3073 "$dir/have/cifar-10-batches-bin/test_batch.bin"
expect_error "test_batch.bin exists but has 3073 bytes, not CIFAR-10's 30730000" "$dir/have"
echo "ok: fetch_cifar10.sh fails cleanly offline and on bad files"
