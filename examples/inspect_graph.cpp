// Seeing what autograd does: draw the graph of a small MLP, profile a few training steps, and let
// anomaly mode find the op whose backward made a NaN. docs/internals/observability.md walks
// through the output.
//
//   ember_inspect_graph [output folder, default "."]
//
// Writes mlp_graph.dot (and mlp_graph.svg when Graphviz's `dot` is installed) and
// train_trace.json (open it in chrome://tracing or https://ui.perfetto.dev).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "core/ember.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace ember;
namespace F = ember::nn::functional;

int main(int argc, char** argv) {
  const std::string out_dir = argc > 1 ? argv[1] : ".";
  manual_seed(0);

  // A 2-layer MLP on random data: 16 samples of 8 features, 4 classes.
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8, 16), std::make_shared<nn::ReLU>(),
                                                std::make_shared<nn::Linear>(16, 4));
  Tensor x = randn({16, 8});
  Tensor y = randint(0, 4, {16});

  // 1. The graph behind one loss, with the parameters' names.
  autograd::TensorNames names;
  for (const auto& [name, p] : model->named_parameters()) names[p.impl()] = name;
  Tensor loss = F::cross_entropy(model->forward(x), y);
  const std::string dot = autograd::to_dot(loss, names);
  const std::string dot_path = out_dir + "/mlp_graph.dot";
  std::ofstream(dot_path) << dot;
  if (dot.find("0.weight") == std::string::npos) std::cout << "CHECK FAILED: no parameter names in the graph\n";
  std::cout << "== 1. the autograd graph (" << dot_path << ") ==\n" << dot;
  if (std::system("command -v dot > /dev/null 2>&1") == 0) {
    const std::string cmd = "dot -Tsvg " + dot_path + " -o " + out_dir + "/mlp_graph.svg";
    std::cout << (std::system(cmd.c_str()) == 0 ? "rendered " + out_dir + "/mlp_graph.svg\n" : "dot failed\n");
  } else {
    std::cout << "(Graphviz is not installed: no SVG; `dot -Tsvg " << dot_path << "` draws it)\n";
  }

  // 2. Profile three training steps.
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1));
  profiler::Profile prof;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    Tensor l = F::cross_entropy(model->forward(x), y);
    l.backward();
    opt.step();
  }
  prof.stop();
  std::cout << "\n== 2. profile of 3 training steps ==\n" << prof.table(profiler::SortBy::SelfTotal, 12);
  std::cout << "\ngrouped by input shapes (top 6 by total time):\n"
            << prof.table(profiler::SortBy::Total, 6, /*group_by_shape=*/true);
  const std::string trace_path = out_dir + "/train_trace.json";
  prof.export_chrome_trace(trace_path);
  if (prof.key_averages().size() < 5) std::cout << "CHECK FAILED: the profile is nearly empty\n";
  std::cout << "wrote " << prof.events().size() << " events to " << trace_path << "\n";

  // 3. Anomaly mode. sqrt of the (partly negative) outputs is NaN there, and so is the gradient
  //    1 / (2 sqrt(x)) that flows back through every layer. Which op made the first NaN gradient?
  std::cout << "\n== 3. anomaly mode ==\n";
  Tensor bad = model->forward(x).sqrt().mean();
  std::cout << "loss = mean(sqrt(mlp(x))) = " << bad.item() << "\n";
  opt.zero_grad();
  bad.backward();  // anomaly mode off: the NaN reaches the parameters' gradients silently
  const Tensor g = model->named_parameters().at("0.weight").grad();
  std::cout << "without anomaly mode, 0.weight.grad has NaNs: " << (sum(ne(g, g).to(kFloat64)).item() > 0 ? "yes" : "no")
            << "\n";

  autograd::DetectAnomalyGuard anomaly;  // on from here to the end of main
  Tensor again = model->forward(x).sqrt().mean();
  try {
    again.backward();
    std::cout << "CHECK FAILED: anomaly mode did not stop the backward\n";
    return 1;
  } catch (const Error& e) {
    std::cout << "with anomaly mode, backward() throws:\n  " << e.what() << "\n";
  }
  return 0;
}
