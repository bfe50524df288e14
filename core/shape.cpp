#include "core/shape.h"

#include <sstream>

#include "core/checked_math.h"

namespace ember {

namespace detail {
void throw_error(const char* file, int line, const std::string& msg) {
  // Strip the build directory so messages stay short: "core/shape.cpp:12".
  std::string f(file);
  for (const char* root : {"/core/", "/nn/", "/optim/", "/cuda/", "/data/", "/distributed/", "/examples/", "/tests/"}) {
    auto p = f.rfind(root);
    if (p != std::string::npos) {
      f = f.substr(p + 1);
      break;
    }
  }
  throw Error(msg + " (" + f + ":" + std::to_string(line) + ")");
}
}  // namespace detail

void Shape::insert(int pos, int64_t v) {
  EMBER_CHECK(n_ < kMaxDims, "tensors have at most ", kMaxDims, " dimensions");
  for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++n_;
}

void Shape::erase(int pos) {
  for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
  --n_;
}

void Shape::resize(int n, int64_t fill) {
  EMBER_CHECK(n >= 0 && n <= kMaxDims, "tensors have at most ", kMaxDims, " dimensions, asked for ", n);
  for (int i = n_; i < n; ++i) d_[i] = fill;
  n_ = n;
}

bool Shape::operator==(const Shape& o) const {
  if (n_ != o.n_) return false;
  for (int i = 0; i < n_; ++i)
    if (d_[i] != o.d_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < n_; ++i) os << (i ? ", " : "") << d_[i];
  os << ']';
  return os.str();
}

Shape contiguous_strides(const Shape& shape) {
  Shape s(shape.size(), 1);
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    // The outermost stride is the last one needed: multiplying further could overflow for a shape
    // whose element count itself fits (checked_numel treats a 0 dim the same way).
    if (i > 0) acc = checked_mul(acc, shape[i] > 0 ? shape[i] : 1, "contiguous_strides");
  }
  return s;
}

Shape strides_for(const Shape& shape, MemoryFormat format) {
  if (format == MemoryFormat::Contiguous) return contiguous_strides(shape);
  EMBER_CHECK(shape.size() == 4, "channels_last: needs a 4-D [N, C, H, W] shape, got ", shape);
  const int64_t C = shape[1] > 0 ? shape[1] : 1, H = shape[2] > 0 ? shape[2] : 1, W = shape[3] > 0 ? shape[3] : 1;
  const int64_t wc = checked_mul(W, C, "channels_last strides");
  return Shape{checked_mul(H, wc, "channels_last strides"), 1, wc, C};
}

bool is_dense_in(const Shape& shape, const Shape& strides, MemoryFormat format) {
  static constexpr int kChannelsLastOrder[] = {1, 3, 2, 0};  // innermost first: C, W, H, N
  if (format == MemoryFormat::ChannelsLast && shape.size() != 4) return false;
  int64_t expected = 1;
  for (int k = 0; k < shape.size(); ++k) {
    const int d = format == MemoryFormat::ChannelsLast ? kChannelsLastOrder[k] : shape.size() - 1 - k;
    if (shape[d] == 1) continue;
    if (strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  int n = std::max(a.size(), b.size());
  Shape out(n, 1);
  for (int i = 0; i < n; ++i) {
    int ia = a.size() - n + i, ib = b.size() - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    EMBER_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b, " cannot be broadcast (dim ", i,
                ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int wrap_dim(const char* op, int64_t dim, int ndim) {
  int64_t n = ndim == 0 ? 1 : ndim;  // a 0-d tensor accepts dim 0 and -1, like PyTorch
  EMBER_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " out of range for a ", ndim, "-d tensor (expected [", -n, ", ",
              n - 1, "])");
  return static_cast<int>(dim < 0 ? dim + n : dim);
}

}  // namespace ember
