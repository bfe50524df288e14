// Storage: a reference-counted block of memory that tensors view. Views of one storage share
// its version counter, so an in-place write through any view is seen by autograd's saved-tensor check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/allocator.h"

namespace ember {

class Storage {
 public:
  // Owns memory from `allocator`.
  Storage(size_t nbytes, Allocator& allocator)
      : data_(allocator.allocate(nbytes)), nbytes_(nbytes), device_(allocator.device()), allocator_(&allocator) {}
  // Borrows memory owned by someone else (from_blob); `deleter` (may be empty) runs on release.
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
      : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}
  ~Storage() {
    if (allocator_) allocator_->deallocate(data_, nbytes_);
    else if (deleter_) deleter_(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::function<void(void*)> deleter_;
  uint64_t version_ = 0;
};

}  // namespace ember
