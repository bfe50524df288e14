// The op table (tests/op_table.h) is the one list of differentiable ops; this test ties the PyTorch
// goldens to it. The goldens are the cases of tests/data/reference_core.json (scripts/make_reference.py,
// run by test_reference.cpp), reference_nn.json (make_reference_nn.py, test_nn_reference.cpp) and
// reference_nn_backward.json (make_reference_nn_backward.py, test_nn_backward_reference.cpp).
//
// A golden case belongs to the op whose name is its longest prefix, whole words only:
// "softmax_large" -> softmax, "log_softmax_last" -> log_softmax, "sum_to" -> sum_to.
//   (a) every op a table entry covers has at least one golden case (or is in kNoGoldenYet below,
//       with the reason), and
//   (b) every golden case belongs to an op: one of the table's if it checks gradients, one of
//       non_differentiable_core_ops() if it does not.
// Rule — add an op: one table entry + its golden case (scripts/make_reference*.py, regenerated with
// /usr/bin/python3, plus the case's ember lambda in the matching test_*reference.cpp).
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/op_table.h"
#include "tests/reference_util.h"

using namespace ember;
using json = nlohmann::json;

namespace {

// Table ops that have no PyTorch golden case yet, each with why. Their gradients are still checked
// by finite differences (gradcheck, gradgradcheck) and across devices (parity); a golden case
// removes the op from this list (the test below fails while a listed op has one, so the list
// cannot go stale).
const std::map<std::string, std::string>& no_golden_yet() {
  static const std::map<std::string, std::string> kNoGoldenYet = {
      // Random: PyTorch draws its mask from its own generator, so no values can be shared.
      {"dropout", "random mask from ember's Generator; PyTorch's generator draws a different one"},
  };
  return kNoGoldenYet;
}

struct Golden {
  std::string file, name;
  bool has_grads;
};

std::vector<Golden> all_goldens() {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"reference_core.json", "scripts/make_reference.py"},
      {"reference_nn.json", "scripts/make_reference_nn.py"},
      {"reference_nn_backward.json", "scripts/make_reference_nn_backward.py"}};
  std::vector<Golden> out;
  for (const auto& [file, script] : files)
    for (const json& c : test::load_reference(file, script).at("cases"))
      out.push_back({file, c.at("name").get<std::string>(), c.contains("grads")});
  return out;
}

// The ops of the table (what its entries cover) and the ops without gradient.
std::set<std::string> table_ops() {
  std::set<std::string> ops;
  for (const test::OpCase& c : test::all_ops())
    for (const std::string& op : c.covered_ops()) ops.insert(op);
  return ops;
}

// The op a golden case belongs to: the longest op name that is the case name or a prefix of it
// followed by '_'; "" if none.
std::string owner(const std::string& case_name, const std::set<std::string>& ops) {
  std::string best;
  for (const std::string& op : ops) {
    const bool match = case_name == op || (case_name.size() > op.size() && case_name.compare(0, op.size(), op) == 0 &&
                                           case_name[op.size()] == '_');
    if (match && op.size() > best.size()) best = op;
  }
  return best;
}

}  // namespace

TEST(OpTableGoldens, EveryTableOpHasAPyTorchGolden) {
  const std::set<std::string> ops = table_ops();
  const std::vector<std::string> nd = test::non_differentiable_core_ops();
  std::set<std::string> all(ops);
  all.insert(nd.begin(), nd.end());
  std::map<std::string, int> goldens_of;
  for (const Golden& g : all_goldens())
    if (g.has_grads) ++goldens_of[owner(g.name, all)];
  for (const std::string& op : ops) {
    const bool allowed = no_golden_yet().count(op) > 0;
    if (allowed)
      EXPECT_EQ(goldens_of[op], 0) << "op '" << op << "' has a golden case now: remove it from kNoGoldenYet";
    else
      EXPECT_GT(goldens_of[op], 0) << "op '" << op
                                   << "' of the op table has no PyTorch golden case: add one to scripts/make_reference*.py"
                                      " (a case named '"
                                   << op << "' or '" << op << "_<variant>'), regenerate the JSON, add its ember lambda;"
                                      " or, if the entry is a variant of an op, say so with .covers({\"op\"})";
  }
  for (const auto& [op, why] : no_golden_yet())
    EXPECT_TRUE(ops.count(op)) << "kNoGoldenYet names '" << op << "', which is not an op of the table";
}

TEST(OpTableGoldens, EveryGoldenBelongsToATableOp) {
  const std::set<std::string> ops = table_ops();
  const std::vector<std::string> nd_list = test::non_differentiable_core_ops();
  const std::set<std::string> nd(nd_list.begin(), nd_list.end());
  std::set<std::string> all(ops);
  all.insert(nd.begin(), nd.end());
  for (const Golden& g : all_goldens()) {
    const std::string op = owner(g.name, all);
    const std::string where = "golden case '" + g.name + "' (tests/data/" + g.file + ")";
    if (g.has_grads)
      EXPECT_TRUE(ops.count(op)) << where << " checks gradients but belongs to no op of the op table"
                                 << (op.empty() ? "" : " (it reads as '" + op + "', which has no gradient)")
                                 << ": add the op to tests/op_table*.cpp or name the case after a table op";
    else
      EXPECT_TRUE(nd.count(op)) << where << " checks no gradients, so its op must be in non_differentiable_core_ops()"
                                << (op.empty() ? " (it names no known op)" : " (it reads as '" + op + "')");
  }
}
