// Views, strides and version counters, printed and checked. docs/internals/01-tensors.md quotes the
// regions between the `// [name]` markers; scripts/check_docs.py makes sure the quotes stay
// identical to this file, and ctest runs it (example.tensor_views), so every number the chapter
// shows is one this program has just asserted.
#include <cstdio>
#include <string>

#include "core/ember.h"

using namespace ember;

namespace {

int g_failures = 0;

// Prints "what: got" and counts a failure when `got` differs from `want`.
void expect(const char* what, const std::string& got, const std::string& want) {
  std::printf("%-44s %s\n", what, got.c_str());
  if (got != want) {
    std::printf("  FAILED: expected %s\n", want.c_str());
    ++g_failures;
  }
}
// Without this overload two C strings would convert to bool (both non-null: a check that cannot fail).
void expect(const char* what, const char* got, const char* want) { expect(what, std::string(got), std::string(want)); }
void expect(const char* what, const Shape& got, const Shape& want) { expect(what, got.str(), want.str()); }
void expect(const char* what, int64_t got, int64_t want) { expect(what, std::to_string(got), std::to_string(want)); }
void expect(const char* what, bool got, bool want) { expect(what, std::string(got ? "true" : "false"), want ? "true" : "false"); }

}  // namespace

int main() {
  // [strides]
  Tensor x = arange(24).reshape({2, 3, 4});  // float32 0, 1, ..., 23 in one storage
  // Row-major strides, in elements: one step in dim 0 skips a whole 3x4 block.
  expect("x.strides()", x.strides(), Shape{12, 4, 1});
  expect("x.is_contiguous()", x.is_contiguous(), true);
  // [/strides]

  // [transpose]
  Tensor xt = x.transpose(1, 2);  // shape [2, 4, 3]: the two strides swap, no data moves
  expect("xt.strides()", xt.strides(), Shape{12, 1, 4});
  expect("xt shares x's storage", xt.storage() == x.storage(), true);
  expect("xt.is_contiguous()", xt.is_contiguous(), false);
  // [/transpose]

  // [slice]
  // Columns 1 and 3 of every row: the offset moves to element 1, the last stride doubles.
  Tensor cols = x.slice(/*dim=*/2, /*start=*/1, /*end=*/4, /*step=*/2);
  expect("cols.shape()", cols.shape(), Shape{2, 3, 2});
  expect("cols.strides()", cols.strides(), Shape{12, 4, 2});
  expect("cols.offset()", cols.offset(), 1);
  // narrow(dim, start, length) is slice with step 1; select(dim, i) also drops the dim.
  Tensor block = x.narrow(0, 1, 1).select(1, 2);  // x[1:2, 2, :]
  expect("block.shape()", block.shape(), Shape{1, 4});
  expect("block.offset()", block.offset(), 12 + 2 * 4);
  // [/slice]

  // [expand]
  // A [3, 1] column broadcast to [3, 4]: the new dim gets stride 0, so all four
  // "copies" are the same memory and expand allocates nothing.
  Tensor col = arange(3).reshape({3, 1});
  Tensor wide = col.expand({3, 4});
  expect("wide.strides()", wide.strides(), Shape{1, 0});
  expect("wide.numel()", wide.numel(), 12);
  expect("wide.storage()->nbytes()", static_cast<int64_t>(wide.storage()->nbytes()), 3 * 4);
  // [/expand]

  // [reshape]
  // view() never copies: it fails when the strides cannot express the new shape.
  bool view_failed = false;
  try {
    (void)xt.view({2, 12});
  } catch (const Error&) {
    view_failed = true;
  }
  expect("xt.view({2, 12}) throws", view_failed, true);
  // reshape() is view() when possible, otherwise contiguous() (a copy) then view().
  Tensor r1 = x.reshape({6, 4});   // contiguous input: a view
  Tensor r2 = xt.reshape({2, 12}); // transposed input: a copy
  expect("x.reshape shares storage", r1.storage() == x.storage(), true);
  expect("xt.reshape shares storage", r2.storage() == x.storage(), false);
  // [/reshape]

  // [channels_last]
  // The same [N, C, H, W] values laid out pixel by pixel: one pixel's C channels side by side.
  Tensor img = arange(2 * 3 * 2 * 2).view({2, 3, 2, 2});
  Tensor nhwc = img.contiguous(MemoryFormat::ChannelsLast);  // a copy into the other order
  expect("nhwc.strides()", nhwc.strides(), Shape{12, 1, 6, 3});
  expect("nhwc.is_contiguous()", nhwc.is_contiguous(), false);
  expect("nhwc.is_contiguous(ChannelsLast)", nhwc.is_contiguous(MemoryFormat::ChannelsLast), true);
  expect("nhwc[0, 1, 0, 1] == img[0, 1, 0, 1]",
         nhwc.select(0, 0).select(0, 1).select(0, 0).select(0, 1).item() ==
             img.select(0, 0).select(0, 1).select(0, 0).select(0, 1).item(),
         true);
  expect("relu(nhwc) keeps the layout", relu(nhwc).strides(), Shape{12, 1, 6, 3});
  // [/channels_last]

  // [version]
  // Every view of one storage shares its version counter, bumped by each in-place write.
  // Autograd saves the version with each saved tensor and compares it in backward.
  const uint64_t before = x.storage()->version();
  cols.mul_(2.0);  // writes x[..., 1] and x[..., 3] through the view
  expect("version bumps by", static_cast<int64_t>(x.storage()->version() - before), 1);
  expect("x[0, 0, 1] after cols.mul_(2)", static_cast<int64_t>(x.select(0, 0).select(0, 0).select(0, 1).item()), 2);
  // [/version]

  // [promotion]
  // Binary ops compute in the larger dtype of the chain uint8 < int64 < float32 < float64.
  Tensor i = arange(3, TensorOptions(kInt64));
  Tensor f = ones({3});
  Tensor d = ones({3}, kFloat64);
  expect("(int64 + float32).dtype()", dtype_name((i + f).dtype()), "float32");
  expect("(float32 + float64).dtype()", dtype_name((f + d).dtype()), "float64");
  expect("(int64 / int64).dtype()", dtype_name((i / i).dtype()), "float32");  // true division
  // [/promotion]

  if (g_failures) std::printf("%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
