#!/usr/bin/env bash
# Runs a distributed test binary as one process, without mpirun (MPI starts as a singleton).
# Usage: run_single.sh <binary> [args...]
set -euo pipefail
# As in mpirun_local.sh: Open MPI keeps some memory until exit by design, which is not ember's
# leak; appended so it holds under scripts/test.sh's ASAN_OPTIONS (the last occurrence wins).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
exec "$@"
