// Every linear and convolution layer of the benchmark networks, and the GEMMs each one runs in a
// training step. One list, shared by bench/gemm_sweep.cpp (which times the GEMMs on each engine)
// and by any code that wants to time ember's own chosen path on the same shapes; bench/roofline.py
// writes the same layers out by hand to count FLOPs per step (the sweep prints its totals so the
// two can be compared).
//
// Networks, at their training batch sizes:
//   mlp   (examples/mnist, batch 128): 784-512-ReLU-512-ReLU-10
//   lenet (examples/mnist, batch 64):  conv(1,10,5)-pool2-conv(10,20,5)-pool2-fc(320,50)-fc(50,10)
//   cnn   (examples/mnist, batch 64):  conv(1,32,3)-conv(32,64,3)-pool2-fc(9216,128)-fc(128,10)
//   resnet20 (bench/resnet20_step.cpp, batch 128 and 32): conv(3,16,3,pad 1) on 32x32, then three
//     stages of three basic blocks (16, 32, 64 channels, 3x3 pad 1; the first block of stages 2 and
//     3 has stride 2 and a 1x1 stride-2 projection shortcut), global average pool, fc(64,10).
//
// The GEMMs, row-major, C[M,N] = op(A)[M,K] * op(B)[K,N]:
//   Linear(in, out), batch B: x [B,in], W [out,in], dy [B,out]
//     forward      y  = x  W^T   M=B    N=out  K=in   (A: x,  B: W transposed)
//     grad input   dx = dy W     M=B    N=in   K=out
//     grad weight  dW = dy^T x   M=out  N=in   K=B    (A: dy transposed)
//   Conv2d(Cin, Cout, k, stride s, pad p) on [B,Cin,H,W] -> [B,Cout,Ho,Wo], as one GEMM over the
//   whole batch: the im2col columns are col [Cin*k*k, B*Ho*Wo], the weight W [Cout, Cin*k*k]
//     forward      Y    = W col       M=Cout      N=B*Ho*Wo  K=Cin*k*k
//     grad input   dcol = W^T dY      M=Cin*k*k   N=B*Ho*Wo  K=Cout     (A: W transposed; col2im follows)
//     grad weight  dW   = dY col^T    M=Cout      N=Cin*k*k  K=B*Ho*Wo  (B: col transposed)
// Each GEMM costs 2*M*N*K FLOPs. The first layer of every network has no grad input: its input is
// the data, which needs no gradient, so frameworks skip it and the list leaves it out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ember::bench {

enum class LayerKind { Linear, Conv2d };

struct Layer {
  const char* model;  // "mlp", "lenet", "cnn", "resnet20"
  const char* name;   // e.g. "conv2", "stage2.block1.conv1"
  LayerKind kind;
  int64_t batch;
  int64_t in, out;                        // features (Linear) or channels (Conv2d)
  int64_t kernel = 1, stride = 1, pad = 0;  // Conv2d only
  int64_t height = 1, width = 1;          // Conv2d input plane
  int64_t count = 1;                      // identical layers in the network (timed once, counted count times)
  bool first = false;                     // takes the data as input: no grad-input GEMM

  int64_t out_height() const { return (height + 2 * pad - kernel) / stride + 1; }
  int64_t out_width() const { return (width + 2 * pad - kernel) / stride + 1; }
};

enum class GemmRole { Forward, GradInput, GradWeight };

inline const char* role_name(GemmRole r) {
  switch (r) {
    case GemmRole::Forward: return "fwd";
    case GemmRole::GradInput: return "grad_in";
    case GemmRole::GradWeight: return "grad_w";
  }
  return "?";
}

struct Gemm {
  const Layer* layer;
  GemmRole role;
  int64_t m, n, k;
  bool trans_a, trans_b;

  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};

// The GEMMs of one layer's training step, by the formulas at the top of this file.
inline std::vector<Gemm> gemms_of(const Layer& l) {
  std::vector<Gemm> g;
  if (l.kind == LayerKind::Linear) {
    g.push_back({&l, GemmRole::Forward, l.batch, l.out, l.in, false, true});
    if (!l.first) g.push_back({&l, GemmRole::GradInput, l.batch, l.in, l.out, false, false});
    g.push_back({&l, GemmRole::GradWeight, l.out, l.in, l.batch, true, false});
  } else {
    const int64_t patch = l.in * l.kernel * l.kernel;
    const int64_t pixels = l.batch * l.out_height() * l.out_width();
    g.push_back({&l, GemmRole::Forward, l.out, pixels, patch, false, false});
    if (!l.first) g.push_back({&l, GemmRole::GradInput, patch, pixels, l.out, true, false});
    g.push_back({&l, GemmRole::GradWeight, l.out, patch, pixels, false, true});
  }
  return g;
}

inline Layer linear(const char* model, const char* name, int64_t batch, int64_t in, int64_t out, bool first = false) {
  return {.model = model, .name = name, .kind = LayerKind::Linear, .batch = batch, .in = in, .out = out,
          .first = first};
}

inline Layer conv(const char* model, const char* name, int64_t batch, int64_t in, int64_t out, int64_t kernel,
                  int64_t stride, int64_t pad, int64_t size, int64_t count = 1, bool first = false) {
  return {.model = model, .name = name, .kind = LayerKind::Conv2d, .batch = batch, .in = in, .out = out,
          .kernel = kernel, .stride = stride, .pad = pad, .height = size, .width = size, .count = count,
          .first = first};
}

// ResNet-20 at one batch size; `model` names it in tables ("resnet20_b128").
inline std::vector<Layer> resnet20_layers(const char* model, int64_t b) {
  return {
      conv(model, "stem", b, 3, 16, 3, 1, 1, 32, 1, /*first=*/true),
      conv(model, "stage1.conv3x3", b, 16, 16, 3, 1, 1, 32, /*count=*/6),  // 3 blocks x 2 convs
      conv(model, "stage2.block1.conv1", b, 16, 32, 3, 2, 1, 32),
      conv(model, "stage2.shortcut1x1", b, 16, 32, 1, 2, 0, 32),
      conv(model, "stage2.conv3x3", b, 32, 32, 3, 1, 1, 16, /*count=*/5),  // block1.conv2 + 2 blocks x 2
      conv(model, "stage3.block1.conv1", b, 32, 64, 3, 2, 1, 16),
      conv(model, "stage3.shortcut1x1", b, 32, 64, 1, 2, 0, 16),
      conv(model, "stage3.conv3x3", b, 64, 64, 3, 1, 1, 8, /*count=*/5),
      linear(model, "fc", b, 64, 10),
  };
}

// All layers of all benchmark networks, in network order.
inline std::vector<Layer> benchmark_layers() {
  std::vector<Layer> l = {
      linear("mlp", "fc1", 128, 784, 512, /*first=*/true),
      linear("mlp", "fc2", 128, 512, 512),
      linear("mlp", "fc3", 128, 512, 10),
      conv("lenet", "conv1", 64, 1, 10, 5, 1, 0, 28, 1, /*first=*/true),
      conv("lenet", "conv2", 64, 10, 20, 5, 1, 0, 12),
      linear("lenet", "fc1", 64, 320, 50),
      linear("lenet", "fc2", 64, 50, 10),
      conv("cnn", "conv1", 64, 1, 32, 3, 1, 0, 28, 1, /*first=*/true),
      conv("cnn", "conv2", 64, 32, 64, 3, 1, 0, 26),
      linear("cnn", "fc1", 64, 9216, 128),
      linear("cnn", "fc2", 64, 128, 10),
  };
  for (const char* model : {"resnet20_b128", "resnet20_b32"}) {
    auto r = resnet20_layers(model, std::string(model) == "resnet20_b128" ? 128 : 32);
    l.insert(l.end(), r.begin(), r.end());
  }
  return l;
}

// FLOPs of one training step of `model` counted over its GEMMs (each layer times its count).
inline double step_flops(const std::vector<Layer>& layers, const std::string& model) {
  double total = 0;
  for (const Layer& l : layers)
    if (model == l.model)
      for (const Gemm& g : gemms_of(l)) total += g.flops() * static_cast<double>(l.count);
  return total;
}

}  // namespace ember::bench
