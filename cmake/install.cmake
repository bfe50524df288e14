# Install rules and ember's CMake package; the top-level CMakeLists.txt includes this file when
# EMBER_INSTALL is ON (the default when ember is the top-level project).
#
#   cmake --install build --prefix /opt/ember
#
# puts
#   include/ember/core/..., nn/, optim/, data/, distributed/ (and cuda/ in a CUDA build): the
#       headers in the source layout, so users include "core/tensor.h", "nn/nn.h", ... as in-tree
#       code does; ember::ember's include path is <prefix>/include/ember
#   lib/libember.a (core, nn, optim, data and, in a CUDA build, the CUDA backend), lib/libember_distributed.a
#   lib/cmake/ember/: emberConfig.cmake, emberConfigVersion.cmake, emberTargets*.cmake
#
# and another project then says find_package(ember 0.1 REQUIRED) with CMAKE_PREFIX_PATH=/opt/ember.
# Headers: every *.h under the folders below is installed, so a new public header needs nothing
# here; a new top-level folder of headers is added to EMBER_HEADER_DIRS.
include(CMakePackageConfigHelpers)

set(EMBER_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/ember)
set(EMBER_HEADER_DIRS core nn optim data distributed)
# ember_nccl_guard (the NCCL state machine, distributed/nccl_guard.cpp) is a static library that
# ember_distributed links privately: a static link still needs its archive, so it is exported too.
# ember-run, the launcher, is installed beside the libraries' users in bin/.
set(EMBER_EXPORTED_TARGETS ember ember_distributed ember_nccl_guard)
if(TARGET ember_run)
  list(APPEND EMBER_EXPORTED_TARGETS ember_run)
endif()
if(EMBER_WITH_CUDA)
  list(APPEND EMBER_HEADER_DIRS cuda)
  list(APPEND EMBER_EXPORTED_TARGETS ember_cuda)
endif()

install(TARGETS ${EMBER_EXPORTED_TARGETS} EXPORT emberTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir IN LISTS EMBER_HEADER_DIRS)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember/${dir}
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(EXPORT emberTargets NAMESPACE ember:: DESTINATION ${EMBER_INSTALL_CMAKEDIR})

# What emberConfig.cmake.in needs to find ember's dependencies again on the user's side.
# Libraries that ember found by file (the OpenMP OpenBLAS, oneDNN, cuDNN, NCCL) are linked by full
# path and exported as such; the package checks at find_package time that they still exist.
set(EMBER_PACKAGE_LIBRARY_FILES)
foreach(target ember ember_distributed)
  get_target_property(libraries ${target} LINK_LIBRARIES)
  foreach(library IN LISTS libraries)
    if(IS_ABSOLUTE "${library}")
      list(APPEND EMBER_PACKAGE_LIBRARY_FILES "${library}")
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES EMBER_PACKAGE_LIBRARY_FILES)
foreach(dependency MPI GLOO)  # EMBER_HAVE_<dependency>, set by distributed/CMakeLists.txt
  if(EMBER_HAVE_${dependency})
    set(EMBER_PACKAGE_WITH_${dependency} ON)
  else()
    set(EMBER_PACKAGE_WITH_${dependency} OFF)
  endif()
endforeach()
if(EMBER_WITH_CUDA)
  get_filename_component(EMBER_PACKAGE_CUDA_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)
endif()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/emberConfig.cmake.in ${PROJECT_BINARY_DIR}/emberConfig.cmake
                              INSTALL_DESTINATION ${EMBER_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API, so find_package(ember 0.1) accepts 0.1.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/emberConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/emberConfig.cmake ${PROJECT_BINARY_DIR}/emberConfigVersion.cmake
        DESTINATION ${EMBER_INSTALL_CMAKEDIR})
