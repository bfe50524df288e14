// Drawing the autograd graph: Graphviz DOT text for the graph behind one or more tensors.
//
//   std::ofstream("graph.dot") << autograd::to_dot(loss, names);   // then: dot -Tsvg graph.dot
//
// What is drawn, in data-flow order (inputs at the top, the roots at the bottom):
//   - a leaf (blue box): a tensor that requires grad and was made by no op: its shape, dtype, and
//     its name if `names` has one (build the map from Module::named_parameters());
//   - a Node (grey box): the op that recorded it, its output shape and dtype, and one line per
//     tensor it saved for backward ("(freed)" after a backward without retain_graph released it);
//   - a root (white ellipse): each tensor passed in, "output 0", "output 1", ...;
//   - hooks: a Node or leaf with hooks is drawn with a double border and says how many;
//   - edges: from each input to the op that used it, labelled with the input's index when the op
//     has several inputs (the index anomaly mode reports). Inputs that need no gradient are omitted.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ember::autograd {

// Names for leaf tensors, keyed by their TensorImpl (core knows nothing of nn::Module).
using TensorNames = std::map<const TensorImpl*, std::string>;

std::string to_dot(const Tensor& root, const TensorNames& names = {});
std::string to_dot(const std::vector<Tensor>& roots, const TensorNames& names = {});

}  // namespace ember::autograd
