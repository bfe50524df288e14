#!/usr/bin/env bash
# Runs a program as NP ranks on this machine: bash mpirun_local.sh NP program [args...]
# Used by ctest (tests/distributed/CMakeLists.txt) and handy by hand. With Open MPI it sets what CI
# needs: running as root is allowed, more ranks than cores (--oversubscribe), no core binding
# (other jobs share the cores), shared memory only (self,vader) with no CMA single-copy (blocked
# in containers), the ob1 messaging layer (no UCX/network probing), and loopback for the launcher.
set -euo pipefail
np=$1
shift
mpirun=${MPIEXEC:-mpirun}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # ranks share the cores; no OpenMP pools per rank
# Open MPI keeps some memory until exit by design; in sanitizer builds that is not ember's leak.
# Appended, not defaulted: scripts/test.sh sets ASAN_OPTIONS with detect_leaks=1 for the whole suite,
# and the last occurrence of an option wins.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
if "$mpirun" --version 2>&1 | grep -Eq "Open MPI|OpenRTE"; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_rmaps_base_oversubscribe=1
  export OMPI_MCA_hwloc_base_binding_policy=none
  export OMPI_MCA_btl=self,vader
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
  export OMPI_MCA_pml=ob1
  export OMPI_MCA_oob_tcp_if_include=lo
  export OMPI_MCA_btl_tcp_if_include=lo
  export OMPI_MCA_mpi_yield_when_idle=1  # ranks blocked in MPI give their core to the others
  exec "$mpirun" -np "$np" --oversubscribe "$@"
fi
exec "$mpirun" -np "$np" "$@"  # MPICH and others: no special options needed
