#!/usr/bin/env bash
# ctest: how ember_ddp_mnist starts without MPI (issue 13), on small generated MNIST files.
# Usage: run_launch_cases.sh CASE EMBER_DDP_MNIST
#   no-store    RANK=1 WORLD_SIZE=2 with nobody at MASTER_ADDR:MASTER_PORT: fails within seconds,
#               naming the address and the rank.
#   alone       RANK=0 WORLD_SIZE=2 but --init mpi without mpirun (MPI would make a world of one):
#               an error, never a silent 1-rank run.
#   mpi-backend --backend mpi under an env:// launch: an error naming the launch.
#   by-hand     two processes started by hand with RANK 0 and 1: they train as 2 ranks on Gloo.
set -uo pipefail
case_name=$1 program=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"; [ -n "${pids:-}" ] && kill $pids 2>/dev/null' EXIT
python3 "$(dirname "$0")/../../tests/make_fake_mnist.py" "$dir" 200 50
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
args=(--model mlp --batch-size 16 --epochs 1 --data "$dir" --workers 0)
status=0
expect() { grep -qF -- "$1" "$dir/log" || { echo "FAIL: output lacks: $1"; status=1; }; }
run_bounded() {  # run_bounded MAX_SECONDS env... -- prints, sets rc and ms
  local max=$1 start
  shift
  start=$(($(date +%s%N) / 1000000))
  timeout --kill-after=5 60 env "$@" >"$dir/log" 2>&1
  rc=$?
  ms=$(($(date +%s%N) / 1000000 - start))
  cat "$dir/log"
  echo "---- exit $rc after $ms ms (limit $max s)"
  [ "$rc" -ne 0 ] || { echo "FAIL: exited 0"; status=1; }
  [ "$ms" -le $((max * 1000)) ] || { echo "FAIL: took more than $max s"; status=1; }
}
launch_env=(RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port)
case "$case_name" in
  no-store)
    run_bounded 15 "${launch_env[@]}" "$program" "${args[@]}"
    expect "rendezvous (rank 1 of 2)"
    expect "127.0.0.1:$port"
    expect "not reachable"
    ;;
  alone)
    run_bounded 30 RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port OMPI_ALLOW_RUN_AS_ROOT=1 \
      OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 "$program" "${args[@]}" --init mpi
    if grep -q "built without MPI" "$dir/log"; then
      echo "(no MPI in this build: the MPI path fails for that reason)"
    else
      expect "the launcher started 2 ranks (WORLD_SIZE=2) but this process would run as a world of 1"
      expect "refusing to train alone"
    fi
    ;;
  mpi-backend)
    run_bounded 15 "${launch_env[@]}" "$program" "${args[@]}" --backend mpi
    expect "--backend mpi needs a launch by mpirun"
    ;;
  by-hand)
    pids=""
    for r in 0 1; do
      env RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port OMP_NUM_THREADS=1 \
        "$program" "${args[@]}" >"$dir/log$r" 2>&1 &
      pids="$pids $!"
    done
    for p in $pids; do wait "$p" || { echo "FAIL: a rank exited non-zero"; status=1; }; done
    pids=""
    cat "$dir/log0" "$dir/log1"
    cp "$dir/log0" "$dir/log"
    expect "2 ranks (gloo on cpu)"
    expect "test accuracy:"
    ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
[ "$status" -eq 0 ] && echo PASS
exit "$status"
