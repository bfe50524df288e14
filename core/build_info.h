// What the linked ember library contains, asked at run time. A program that links ember (from an
// installed package or through add_subdirectory) checks here that it got the backends it expects,
// instead of trusting how the library was said to be configured.
#pragma once

namespace ember {

// True when the CUDA backend's code is in this program and registered itself with core, whether or
// not a GPU is present (cuda_device_count() says that). False in a build without CUDA. A program
// that links a CUDA build of ember and still sees false has lost the backend at link time (see
// cuda/CMakeLists.txt: the anchor symbol that keeps it in a static link).
bool cuda_is_built();

}  // namespace ember
