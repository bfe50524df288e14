// Errors: one exception type and one check macro for the whole library.
// Every message carries the file:line where it was raised so a user can find the check,
// and the text names the op and the offending shapes/dtypes/values.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ember {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown by a device allocator that cannot satisfy a request even after releasing its cache. The
// message says what was asked for and what is allocated, reserved and free. The allocator stays
// usable: catch it, free tensors or shrink the batch, and go on.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {
// Concatenates any streamable values into a string (used to build messages lazily).
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace ember

// EMBER_CHECK(cond, parts...): throws ember::Error("parts... (file:line)") when cond is false.
// The message parts are only formatted on failure, so checks are cheap on hot paths.
#define EMBER_CHECK(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      ::ember::detail::throw_error(__FILE__, __LINE__, ::ember::detail::str_cat(__VA_ARGS__)); \
  } while (0)

#define EMBER_FAIL(...) ::ember::detail::throw_error(__FILE__, __LINE__, ::ember::detail::str_cat(__VA_ARGS__))
