// nn::functional: the stateless neural-network ops the layers (nn/layers.h) are built from, under
// PyTorch's names (torch.nn.functional). They live in the op layer (core/ops/nn_ops.h, with their
// forward and backward in core/ops/{linear,conv,pool,norm,loss}.cpp); this header only re-exports
// them, so nn holds modules and core holds every differentiable op.
//
//   namespace F = ember::nn::functional;
//   Tensor y = F::conv2d(x, w, b, /*stride=*/2, /*padding=*/1);
//   Tensor loss = F::cross_entropy(logits, labels, {.label_smoothing = 0.1});
#pragma once

#include "core/ops.h"

namespace ember::nn {

using ember::Reduction;
using ember::Size2;

namespace functional {

using ember::CrossEntropyOptions;
using ember::NllLossOptions;

using ember::dropout;
using ember::linear;
using ember::linear_relu;

using ember::conv2d;
using ember::conv2d_relu;

using ember::adaptive_avg_pool2d;
using ember::avg_pool2d;
using ember::max_pool2d;
using ember::max_pool2d_with_indices;

using ember::batch_norm;
using ember::batch_norm_relu;
using ember::layer_norm;

using ember::cross_entropy;
using ember::mse_loss;
using ember::nll_loss;

}  // namespace functional
}  // namespace ember::nn
