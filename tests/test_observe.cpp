// Seeing the graph: autograd::to_dot, the op profiler and anomaly mode (issue 14).
#include <cmath>
#include <cstdlib>
#include <fstream>
// GCC 12 reports a false -Wmaybe-uninitialized inside <regex> when built with the sanitizers
// (libstdc++'s std::function move in the NFA); the warning's location is in the header, so it is
// silenced there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/anomaly.h"
#include "core/graph_dot.h"
#include "core/profiler.h"
#include "nn/nn.h"
#include "tests/test_util.h"

using namespace ember;
namespace F = ember::nn::functional;

namespace {

// The id of the one DOT statement whose label starts with `label_start` ("linear\n[2, 3]").
std::string id_of(const std::string& dot, const std::string& label_start) {
  std::regex stmt("  ([a-z]+[0-9]+) \\[[^\\n]*label=\"([^\"]*)\"\\];");
  std::string found;
  int matches = 0;
  for (auto it = std::sregex_iterator(dot.begin(), dot.end(), stmt); it != std::sregex_iterator(); ++it) {
    if ((*it)[2].str().rfind(label_start, 0) == 0) {
      found = (*it)[1].str();
      ++matches;
    }
  }
  EXPECT_EQ(matches, 1) << "label starting with '" << label_start << "' in\n" << dot;
  return found;
}

bool has_edge(const std::string& dot, const std::string& from, const std::string& to) {
  return dot.find("  " + from + " -> " + to + ";") != std::string::npos ||
         dot.find("  " + from + " -> " + to + " [") != std::string::npos;
}

// Structural checks that hold for any DOT text we write: one digraph, every line a statement, and
// every edge between declared ids.
void expect_well_formed(const std::string& dot) {
  ASSERT_EQ(dot.rfind("digraph autograd {\n", 0), 0u) << dot;
  ASSERT_EQ(dot.substr(dot.size() - 2), "}\n") << dot;
  std::set<std::string> declared;
  std::regex decl("^  ([a-z]+[0-9]+) \\[.*\\];$"), edge("^  ([a-z]+[0-9]+) -> ([a-z]+[0-9]+)( \\[label=\"[0-9]+\"\\])?;$");
  std::istringstream in(dot);
  std::string line;
  std::vector<std::pair<std::string, std::string>> edges;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (n <= 3 || line == "}") continue;  // header: digraph, node and edge defaults
    if (std::regex_match(line, m, decl)) declared.insert(m[1]);
    else if (std::regex_match(line, m, edge)) edges.emplace_back(m[1], m[2]);
    else ADD_FAILURE() << "not a DOT statement: " << line;
  }
  for (const auto& [a, b] : edges) {
    EXPECT_TRUE(declared.count(a)) << a << " never declared";
    EXPECT_TRUE(declared.count(b)) << b << " never declared";
  }
}

// Linear(4 -> 3) + ReLU + cross-entropy on a batch of 2, with the layer's parameter names.
struct SmallNet {
  nn::Linear fc{4, 3};
  Tensor x = randn({2, 4});
  Tensor target = from_vector<int64_t>({0, 2});
  autograd::TensorNames names() const {
    autograd::TensorNames n;
    for (const auto& [name, p] : fc.named_parameters()) n[p.impl()] = "fc." + name;
    return n;
  }
  Tensor loss() { return F::cross_entropy(fc.forward(x).relu(), target); }
};

}  // namespace

// ---------------- to_dot ----------------

TEST(ToDot, LinearReluCrossEntropyNodesEdgesShapes) {
  manual_seed(0);
  SmallNet net;
  Tensor loss = net.loss();
  const std::string dot = autograd::to_dot(loss, net.names());
  expect_well_formed(dot);

  const std::string linear = id_of(dot, "linear\\n[2, 3] float32");
  const std::string relu = id_of(dot, "relu\\n[2, 3] float32");
  const std::string ce = id_of(dot, "cross_entropy\\n[2] float32");
  const std::string weight = id_of(dot, "fc.weight\\n[3, 4] float32\\nrequires_grad");
  const std::string bias = id_of(dot, "fc.bias\\n[3] float32\\nrequires_grad");
  const std::string out = id_of(dot, "output 0\\n[] float32");

  // Data-flow direction, with input indices on the edges of ops with several inputs.
  EXPECT_NE(dot.find("  " + weight + " -> " + linear + " [label=\"1\"];"), std::string::npos) << dot;
  EXPECT_NE(dot.find("  " + bias + " -> " + linear + " [label=\"2\"];"), std::string::npos) << dot;
  EXPECT_TRUE(has_edge(dot, linear, relu)) << dot;
  EXPECT_TRUE(has_edge(dot, relu, ce)) << dot;
  EXPECT_FALSE(has_edge(dot, relu, linear)) << dot;
  // The mean over the batch sits between cross_entropy and the output; the output's producer
  // is a Node (not a leaf).
  EXPECT_NE(dot.find(" -> " + out + ";"), std::string::npos) << dot;

  // What linear saved for backward: only the input rows [2, 4], for the weight's gradient (x needs
  // no gradient, so the weight is not saved for it).
  EXPECT_NE(dot.find("linear\\n[2, 3] float32\\nsaved 0: [2, 4] float32\""), std::string::npos) << dot;
  EXPECT_NE(dot.find("cross_entropy\\n[2] float32\\nsaved 0: [2, 3] float32\\nsaved 1: [2] int64\\nsaved 2: [2, 2] "
                     "float32"),
            std::string::npos)
      << dot;
  // x needs no gradient: no leaf is drawn for it.
  EXPECT_EQ(dot.find("[2, 4] float32\\nrequires_grad"), std::string::npos) << dot;
}

TEST(ToDot, UnnamedLeavesHooksAndFreedSavedTensors) {
  Tensor a = from_vector<float>({1, 2, 3}).requires_grad_();
  Tensor b = (a * a).exp();
  b.register_hook([](const Tensor&) {});
  a.register_hook([](const Tensor&) {});
  Tensor y = b.sum();
  std::string dot = autograd::to_dot(y);
  expect_well_formed(dot);
  const std::string leaf = id_of(dot, "leaf\\n[3] float32\\nrequires_grad\\nhooks: 1");
  const std::string mul = id_of(dot, "mul\\n[3] float32\\nsaved 0: [3] float32\\nsaved 1: [3] float32");
  const std::string exp = id_of(dot, "exp\\n[3] float32\\nsaved 0: [3] float32\\nhooks: 1");
  EXPECT_NE(dot.find("  " + leaf + " -> " + mul + " [label=\"0\"];"), std::string::npos) << dot;
  EXPECT_NE(dot.find("  " + leaf + " -> " + mul + " [label=\"1\"];"), std::string::npos) << dot;
  EXPECT_TRUE(has_edge(dot, mul, exp));
  EXPECT_NE(dot.find("peripheries=2"), std::string::npos);

  y.backward();  // releases the graph: the saved tensors are gone
  dot = autograd::to_dot(y);
  expect_well_formed(dot);
  id_of(dot, "mul\\n[3] float32\\nsaved 0: (freed)\\nsaved 1: (freed)");
  EXPECT_NE(dot.find("(released)"), std::string::npos);
}

TEST(ToDot, SeveralRootsShareOneGraph) {
  Tensor a = from_vector<double>({1, 2}).requires_grad_();
  Tensor h = a * 2.0;
  Tensor y1 = h.sum(), y2 = h.exp();
  const std::string dot = autograd::to_dot(std::vector<Tensor>{y1, y2, a});
  expect_well_formed(dot);
  const std::string mul = id_of(dot, "mul\\n[2] float64");  // drawn once, used by both roots
  id_of(dot, "output 0\\n[] float64");
  id_of(dot, "output 1\\n[2] float64");
  const std::string leaf_root = id_of(dot, "output 2\\n[2] float64");
  const std::string leaf = id_of(dot, "leaf\\n[2] float64\\nrequires_grad");
  EXPECT_TRUE(has_edge(dot, leaf, leaf_root));
  EXPECT_TRUE(has_edge(dot, leaf, mul));
}

class ObserveFiles : public test::ScratchDirTest {};

TEST_F(ObserveFiles, DotRendersWithGraphvizWhenInstalled) {
  manual_seed(0);
  SmallNet net;
  const std::string dot = autograd::to_dot(net.loss(), net.names());
  std::ofstream(path("graph.dot")) << dot;
  if (std::system("command -v dot > /dev/null 2>&1") != 0) GTEST_SKIP() << "graphviz `dot` is not installed";
  const std::string cmd = "dot -Tsvg " + path("graph.dot") + " -o " + path("graph.svg");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << dot;
  std::ifstream svg(path("graph.svg"));
  std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("fc.weight"), std::string::npos);
}

// ---------------- profiler ----------------

namespace {
const profiler::OpStats* find_stats(const std::vector<profiler::OpStats>& rows, const std::string& name,
                                    const std::string& shapes = "") {
  for (const auto& r : rows)
    if (r.name == name && r.shapes == shapes) return &r;
  return nullptr;
}
}  // namespace

TEST(Profiler, CountsCallsAndShapes) {
  Tensor a = ones({4, 3}), b = ones({3}), m = ones({3, 5});
  profiler::Profile prof;
  for (int i = 0; i < 3; ++i) (void)add(a, b);
  (void)matmul(a, m);
  prof.stop();
  (void)add(a, b);  // after stop: not recorded

  const auto rows = prof.key_averages();
  ASSERT_NE(find_stats(rows, "add"), nullptr);
  EXPECT_EQ(find_stats(rows, "add")->calls, 3);
  ASSERT_NE(find_stats(rows, "matmul"), nullptr);
  EXPECT_EQ(find_stats(rows, "matmul")->calls, 1);
  const auto by_shape = prof.key_averages(/*group_by_shape=*/true);
  ASSERT_NE(find_stats(by_shape, "add", "[[4, 3], [3]]"), nullptr);
  EXPECT_EQ(find_stats(by_shape, "add", "[[4, 3], [3]]")->calls, 3);
  EXPECT_NE(find_stats(by_shape, "matmul", "[[4, 3], [3, 5]]"), nullptr);
}

TEST(Profiler, SelfTimeExcludesNestedOpsAndBackwardNodesAreNamed) {
  manual_seed(0);
  SmallNet net;
  profiler::Profile prof;
  Tensor loss = net.loss();
  loss.backward();
  prof.stop();

  int64_t top_level_total = 0, self_total = 0;
  bool nested_inside_linear = false;
  for (const auto& e : prof.events()) {
    EXPECT_GE(e.self_ns, 0) << e.name;
    EXPECT_LE(e.self_ns, e.duration_ns) << e.name;
    if (e.depth == 0) top_level_total += e.duration_ns;
    self_total += e.self_ns;
    nested_inside_linear |= e.name == "reshape" && e.depth == 1;
  }
  // Each nanosecond is the self time of exactly one scope.
  EXPECT_EQ(self_total, top_level_total);
  EXPECT_TRUE(nested_inside_linear);

  const auto rows = prof.key_averages();
  for (const char* name : {"linear", "relu", "cross_entropy", "linearBackward", "reluBackward", "cross_entropyBackward"}) {
    const auto* r = find_stats(rows, name);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_EQ(r->calls, 1) << name;
    EXPECT_LE(r->self_ns, r->total_ns) << name;
  }
  // The backward of linear multiplies with ordinary ops: they run nested inside linearBackward.
  const auto* lb = find_stats(rows, "linearBackward");
  EXPECT_LT(lb->self_ns, lb->total_ns);
}

TEST(Profiler, TableListsTheTopRows) {
  Tensor a = ones({8, 8});
  profiler::Profile prof;
  for (int i = 0; i < 4; ++i) (void)a.exp();
  (void)a.sum();
  prof.stop();
  const std::string t = prof.table(profiler::SortBy::Calls, 1);
  EXPECT_NE(t.find("Name"), std::string::npos) << t;
  EXPECT_NE(t.find("Self total"), std::string::npos) << t;
  EXPECT_NE(t.find("exp "), std::string::npos) << t;
  EXPECT_EQ(t.find("sum "), std::string::npos) << t;  // top 1 by calls: exp only
  const std::string shapes = prof.table(profiler::SortBy::Name, 10, /*group_by_shape=*/true);
  EXPECT_NE(shapes.find("[[8, 8]]"), std::string::npos) << shapes;
  EXPECT_NE(shapes.find("sum "), std::string::npos) << shapes;
}

TEST_F(ObserveFiles, ChromeTraceIsValidJson) {
  manual_seed(0);
  SmallNet net;
  profiler::Profile prof;
  net.loss().backward();
  prof.stop();
  prof.export_chrome_trace(path("trace.json"));
  std::ifstream f(path("trace.json"));
  const nlohmann::json doc = nlohmann::json::parse(f);  // throws on invalid JSON
  const auto& events = doc.at("traceEvents");
  ASSERT_EQ(events.size(), prof.events().size());
  bool saw_backward = false;
  for (const auto& e : events) {
    EXPECT_EQ(e.at("ph"), "X");
    EXPECT_TRUE(e.at("ts").is_number());
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
    EXPECT_TRUE(e.at("pid").is_number_integer());
    EXPECT_TRUE(e.at("tid").is_number_integer());
    EXPECT_TRUE(e.at("args").at("Input Shapes").is_string());
    saw_backward |= e.at("name") == "linearBackward" && e.at("cat") == "backward";
  }
  EXPECT_TRUE(saw_backward);
}

TEST(Profiler, NestedProfilesAndOtherThreads) {
  Tensor a = ones({2});
  profiler::Profile outer;
  (void)a.exp();
  {
    profiler::Profile inner;
    (void)a.sin();
    std::thread([&] { (void)a.cos(); }).join();  // another thread: recorded by neither
  }
  (void)a.tanh();
  outer.stop();
  std::set<std::string> outer_names;
  for (const auto& e : outer.events()) outer_names.insert(e.name);
  EXPECT_EQ(outer_names, (std::set<std::string>{"exp", "tanh"}));
}

// ---------------- anomaly mode ----------------

TEST(Anomaly, NamesTheForwardOpWhoseBackwardMadeNaN) {
  autograd::DetectAnomalyGuard anomaly;
  EXPECT_TRUE(autograd::is_anomaly_enabled());
  Tensor x = from_vector<double>({-1.0, 4.0}).requires_grad_();
  Tensor loss = x.sqrt().sum();  // d sqrt(x)/dx = 1 / (2 sqrt(x)): NaN at -1
  try {
    loss.backward();
    FAIL() << "expected anomaly mode to stop the backward";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("backward of sqrt returned NaN in the gradient of input 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("forward call: sqrt(input 0: [2] float64)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("op stack when it was recorded: sqrt"), std::string::npos) << msg;
  }
}

TEST(Anomaly, ReportsInfinityTheInputIndexAndTheEnclosingOps) {
  autograd::DetectAnomalyGuard anomaly;
  Tensor x = from_vector<float>({1.0f, INFINITY}).requires_grad_();
  Tensor t = from_vector<float>({0.0f, 0.0f});
  Tensor loss = F::mse_loss(t, x);  // d = t - x; loss = mean(d * d): the mul's backward gives -inf
  test::expect_error([&] { loss.backward(); }, {"backward of mul returned infinity in the gradient of input 0",
                                                "mul(input 0: [2] float32, input 1: [2] float32)",
                                                "op stack when it was recorded: mse_loss > mul"});
}

TEST(Anomaly, OffMeansNoErrorNoCheckAndNoOrigin) {
  ASSERT_FALSE(autograd::is_anomaly_enabled());
  Tensor x = from_vector<double>({-1.0, 4.0}).requires_grad_();
  Tensor y = x.sqrt();
  EXPECT_EQ(y.grad_fn()->origin(), nullptr);
  profiler::Profile prof;
  y.sum().backward();
  prof.stop();
  EXPECT_TRUE(std::isnan(x.grad().to_vector<double>()[0]));  // the NaN flows through unchecked
  for (const auto& e : prof.events()) EXPECT_NE(e.name, "ne") << "a NaN check ran with anomaly mode off";

  // On, the same backward runs the check (a NaN test per gradient) and the Node has an origin.
  autograd::DetectAnomalyGuard anomaly;
  Tensor z = from_vector<double>({1.0, 4.0}).requires_grad_();
  Tensor w = z.sqrt();
  ASSERT_NE(w.grad_fn()->origin(), nullptr);
  profiler::Profile checked;
  w.sum().backward();
  checked.stop();
  int checks = 0;
  for (const auto& e : checked.events()) checks += e.name == "ne" && e.depth == 0;
  EXPECT_GE(checks, 2);  // one per backward node at least (sum, sqrt)
}

TEST(Anomaly, GuardRestoresThePreviousState) {
  EXPECT_FALSE(autograd::is_anomaly_enabled());
  {
    autograd::DetectAnomalyGuard on;
    EXPECT_TRUE(autograd::is_anomaly_enabled());
    {
      autograd::DetectAnomalyGuard again;
      EXPECT_TRUE(autograd::is_anomaly_enabled());
    }
    EXPECT_TRUE(autograd::is_anomaly_enabled());
  }
  EXPECT_FALSE(autograd::is_anomaly_enabled());
  autograd::set_detect_anomaly(true);
  EXPECT_TRUE(autograd::is_anomaly_enabled());
  autograd::set_detect_anomaly(false);
  EXPECT_FALSE(autograd::is_anomaly_enabled());
}
