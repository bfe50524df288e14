#include "cuda/cublas_library.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/error.h"

// The soname of the cuBLAS these headers belong to, tried first so that LD_LIBRARY_PATH and the
// executable's run path decide, as they would for a linked library; then the file CMake found at
// configure time (EMBER_CUBLAS_LIBRARY_PATH), for a toolkit outside the loader's search path.
#define EMBER_STRINGIFY_(x) #x
#define EMBER_STRINGIFY(x) EMBER_STRINGIFY_(x)
#ifndef EMBER_CUBLAS_LIBRARY_PATH
#define EMBER_CUBLAS_LIBRARY_PATH ""
#endif

namespace ember::cuda {

namespace {

constexpr const char* kSoname = "libcublas.so." EMBER_STRINGIFY(CUBLAS_VER_MAJOR);

template <typename Fn>
void resolve(void* lib, const char* symbol, const std::string& file, Fn& out) {
  dlerror();  // clear an old error, so the check below sees this lookup's
  void* p = dlsym(lib, symbol);
  EMBER_CHECK(p != nullptr, "cuBLAS: ", file, " has no symbol ", symbol,
              ": it is not the cuBLAS ", CUBLAS_VER_MAJOR, ".x this build was compiled against");
  out = reinterpret_cast<Fn>(p);
}

CublasApi load() {
  std::string tried;
  void* lib = nullptr;
  std::string file;
  for (const char* candidate : {kSoname, EMBER_CUBLAS_LIBRARY_PATH}) {
    if (candidate[0] == '\0') continue;
    lib = dlopen(candidate, RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      file = candidate;
      break;
    }
    const char* why = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (why ? why : candidate);
  }
  EMBER_CHECK(lib != nullptr, "cuBLAS could not be loaded (", tried,
              "): a matmul on a CUDA device needs it; put its folder on LD_LIBRARY_PATH");
  // Never dlclose'd: handles made from it live for the process (cuda/runtime.cpp).
  CublasApi api{};
  resolve(lib, "cublasCreate_v2", file, api.create);
  resolve(lib, "cublasDestroy_v2", file, api.destroy);
  resolve(lib, "cublasSetStream_v2", file, api.set_stream);
  resolve(lib, "cublasGemmEx_64", file, api.gemm_ex);
  resolve(lib, "cublasGemmStridedBatchedEx_64", file, api.gemm_strided_batched_ex);
  resolve(lib, "cublasGetStatusString", file, api.status_string);
  resolve(lib, "cublasGetStatusName", file, api.status_name);
  return api;
}

std::mutex g_mutex;
CublasApi g_api{};
bool g_loaded = false;

}  // namespace

const CublasApi& cublas() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_loaded) {
    g_api = load();  // throws, leaving g_loaded false: the next call tries again
    g_loaded = true;
  }
  return g_api;
}

bool cublas_is_loaded() {
  // RTLD_NOLOAD: a handle only if the library is already mapped (by us or anyone else).
  void* lib = dlopen(kSoname, RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return false;
  dlclose(lib);  // drops the reference RTLD_NOLOAD just took
  return true;
}

}  // namespace ember::cuda
