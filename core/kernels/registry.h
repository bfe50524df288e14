// Kernel tables: the layer and optimizer kernels, grouped by family (conv, pool, norm, loss,
// optim), each family an interface of virtual functions in its own header beside this one. They
// are kept out of core/backend.h on purpose: Backend holds only the device primitives every op is
// built from (memory, elementwise, reductions, softmax, matmul, indexing), and a new layer adds
// its own family here without editing Backend or any other family.
//
// Each device type registers, per family, a function that returns its table for a device index:
// the CPU backend in core/backend.cpp, the CUDA backend from cuda/cuda_backend.cpp at
// static-initialisation time (so core never needs an #ifdef). Asking for a table first asks
// backend(d) for the device, so the errors are the same as for any op: "built without CUDA", or
// a device index out of range. A device that registered no table for a family gets the family's
// default one, whose kernels throw "not implemented on this device".
#pragma once

#include <array>
#include <cstddef>

#include "core/backend.h"
#include "core/device.h"

namespace ember {

template <typename Kernels>
class KernelRegistry {
 public:
  using Getter = Kernels* (*)(int index);

  // Called once per device type, at start-up.
  static void add(DeviceType type, Getter get) { slots()[static_cast<size_t>(type)] = get; }

  static Kernels& get(Device d) {
    backend(d);  // the device's own checks
    const Getter get = slots()[static_cast<size_t>(d.type)];
    if (get == nullptr) {
      static Kernels unimplemented;  // the family's default bodies: each throws, naming the kernel
      return unimplemented;
    }
    return *get(d.index);
  }

 private:
  static std::array<Getter, 2>& slots() {  // indexed by DeviceType (CPU, CUDA)
    static std::array<Getter, 2> s{};
    return s;
  }
};

}  // namespace ember
