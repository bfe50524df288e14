// The DDP start-up agreement: see handshake.h.
#include "distributed/handshake.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/ember.h"

namespace ember::distributed {

namespace {

// ---- gathering small arrays from every rank ----

// Every rank's `mine` (the same length everywhere), concatenated in rank order, on the host.
// Runs on comm.device(), so it works for the MPI and the NCCL communicator alike.
std::vector<int64_t> all_gather_int64(Communicator& comm, const std::vector<int64_t>& mine) {
  const auto n = static_cast<int64_t>(mine.size());
  Tensor in = from_vector<int64_t>(mine, {n}).to(comm.device());
  Tensor out = empty({checked_mul(comm.world_size(), n, "start-up handshake")},
                     TensorOptions(kInt64).device(comm.device()));
  comm.all_gather(in, out);
  return out.to(kCPU).to_vector<int64_t>();
}

// Rank `root`'s `mine` on every rank; `length` is its size, which every rank learnt from a gather
// before, so each rank allocates exactly what it receives.
std::string broadcast_bytes(Communicator& comm, const std::string& mine, int64_t length, int root) {
  if (length == 0) return "";
  Tensor buffer = empty({length}, TensorOptions(kUInt8));
  if (comm.rank() == root) std::memcpy(buffer.data_ptr(), mine.data(), length);
  buffer = buffer.to(comm.device());
  comm.broadcast(buffer, root);
  Tensor host = buffer.to(kCPU);
  return std::string(static_cast<const char*>(host.data_ptr()), length);
}

// ---- the signature's encoding ----
// Per entry: kind (1 byte), dtype (1), requires_grad (1), name length (8) and bytes, rank (8) and
// each dim (8). Fixed-width little-endian-as-stored integers: every rank runs the same build.

void put_i64(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

std::string encode(const ModelSignature& signature) {
  std::string out;
  for (const SignatureEntry& e : signature) {
    out.push_back(static_cast<char>(e.kind));
    out.push_back(static_cast<char>(e.dtype));
    out.push_back(static_cast<char>(e.requires_grad));
    put_i64(out, static_cast<int64_t>(e.name.size()));
    out += e.name;
    put_i64(out, e.shape.size());
    for (int64_t d : e.shape) put_i64(out, d);
  }
  return out;
}

// Reads what encode() wrote, checking every length against the bytes left: the bytes came from
// another process, and a bug there must be an Error here, not a read past the buffer.
class SignatureReader {
 public:
  SignatureReader(const std::string& bytes, int rank) : bytes_(bytes), rank_(rank) {}

  ModelSignature read_all() {
    ModelSignature out;
    while (pos_ < bytes_.size()) out.push_back(read_entry());
    return out;
  }

 private:
  SignatureEntry read_entry() {
    SignatureEntry e;
    e.kind = static_cast<SignatureEntry::Kind>(read_u8());
    e.dtype = static_cast<DType>(read_u8());
    e.requires_grad = read_u8() != 0;
    const int64_t name_length = read_length();
    e.name = bytes_.substr(pos_, name_length);
    pos_ += name_length;
    const int64_t ndim = read_length();  // each dim takes 8 more bytes: bounded by what is left
    std::vector<int64_t> dims;
    for (int64_t i = 0; i < ndim; ++i) dims.push_back(read_i64());
    e.shape = Shape(dims);
    return e;
  }
  uint8_t read_u8() {
    need(1);
    return static_cast<uint8_t>(bytes_[pos_++]);
  }
  int64_t read_i64() {
    need(sizeof(int64_t));
    int64_t v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  // A count of things still to come in the buffer: at least 0 and at most the bytes left.
  int64_t read_length() {
    const int64_t n = read_i64();
    EMBER_CHECK(n >= 0 && static_cast<uint64_t>(n) <= bytes_.size() - pos_, "start-up handshake: rank ", rank_,
                "'s model signature is malformed at byte ", pos_, " (length ", n, ")");
    return n;
  }
  void need(size_t n) {
    EMBER_CHECK(bytes_.size() - pos_ >= n, "start-up handshake: rank ", rank_,
                "'s model signature is truncated at byte ", pos_);
  }

  const std::string& bytes_;
  int rank_;
  size_t pos_ = 0;
};

// 64-bit FNV-1a: a mismatch is found by comparing one number per rank.
int64_t fnv1a(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  int64_t out;
  std::memcpy(&out, &h, sizeof out);
  return out;
}

// ---- describing a difference ----

const char* kind_name(SignatureEntry::Kind k) { return k == SignatureEntry::Kind::Parameter ? "parameter" : "buffer"; }

int64_t count_of(const ModelSignature& s, SignatureEntry::Kind k) {
  return std::count_if(s.begin(), s.end(), [k](const SignatureEntry& e) { return e.kind == k; });
}

std::string counts(const ModelSignature& s) {
  return detail::str_cat(count_of(s, SignatureEntry::Kind::Parameter), " parameters and ",
                         count_of(s, SignatureEntry::Kind::Buffer), " buffers");
}

std::string describe(const SignatureEntry& e) {
  return detail::str_cat(kind_name(e.kind), " '", e.name, "' (shape ", e.shape, ", ", dtype_name(e.dtype), ")");
}

// The first way `theirs` (rank r's) differs from `ours` (rank 0's), as "rank r's ..., rank 0's
// ..."; empty when they are equal.
std::string first_difference(const ModelSignature& theirs, int r, const ModelSignature& ours) {
  const std::string R = "rank " + std::to_string(r);
  const size_t n = std::min(theirs.size(), ours.size());
  for (size_t i = 0; i < n; ++i) {
    const SignatureEntry& a = theirs[i];
    const SignatureEntry& b = ours[i];
    if (a.kind != b.kind || a.name != b.name)
      return detail::str_cat(R, "'s tensor #", i, " is ", kind_name(a.kind), " '", a.name, "', rank 0's is ",
                             kind_name(b.kind), " '", b.name, "' (", R, " has ", counts(theirs), ", rank 0 has ",
                             counts(ours), ")");
    if (a.shape != b.shape)
      return detail::str_cat(R, "'s ", kind_name(a.kind), " '", a.name, "' has shape ", a.shape, ", rank 0's has ",
                             b.shape);
    if (a.dtype != b.dtype)
      return detail::str_cat(R, "'s ", kind_name(a.kind), " '", a.name, "' has dtype ", dtype_name(a.dtype),
                             ", rank 0's has ", dtype_name(b.dtype));
    if (a.requires_grad != b.requires_grad)
      return detail::str_cat(R, "'s ", kind_name(a.kind), " '", a.name, "' has requires_grad ",
                             a.requires_grad ? "true" : "false", ", rank 0's has ", b.requires_grad ? "true" : "false",
                             " (a parameter frozen on some ranks only changes which gradients are reduced)");
  }
  if (theirs.size() > n)
    return detail::str_cat(R, " has ", describe(theirs[n]), " where rank 0's model has no more tensors (", R, " has ",
                           counts(theirs), ", rank 0 has ", counts(ours), ")");
  if (ours.size() > n)
    return detail::str_cat(R, "'s model has no more tensors where rank 0 has ", describe(ours[n]), " (", R, " has ",
                           counts(theirs), ", rank 0 has ", counts(ours), ")");
  return "";
}

}  // namespace

void check_same_signature_on_all_ranks(Communicator& comm, const ModelSignature& mine, const std::string& context) {
  const int world = comm.world_size();
  if (world == 1) return;
  const std::string bytes = encode(mine);
  const auto length = static_cast<int64_t>(bytes.size());

  // Fast path: one fixed-size record per rank.
  const std::vector<int64_t> records = all_gather_int64(comm, {length, fnv1a(bytes)});
  std::vector<int64_t> lengths;
  std::vector<int> differing;
  for (int r = 0; r < world; ++r) {
    lengths.push_back(records[2 * r]);
    if (records[2 * r] != records[0] || records[2 * r + 1] != records[1]) differing.push_back(r);
  }
  if (differing.empty()) return;

  const std::string rule =
      " (every rank must wrap the same model: the same parameters and buffers, in the same order, with the same "
      "names, shapes, dtypes and requires_grad)";
  std::ostringstream which;  // at most 8 ranks by number: the message stays short on a large job
  for (size_t i = 0; i < std::min<size_t>(differing.size(), 8); ++i) which << (i ? ", " : "") << differing[i];
  if (differing.size() > 8) which << " and " << differing.size() - 8 << " more";
  const std::string ranks_differ = "; rank(s) " + which.str() + " differ from rank 0";

  // Slow path: rank 0's signature and the first differing rank's, each bounded, so every rank can
  // name the first difference (two broadcasts: the cost does not grow with the world size).
  const int r = differing[0];
  const int64_t width = std::max(lengths[0], lengths[r]);
  if (width > kMaxSignatureBytes)
    EMBER_FAIL(context, ": rank ", r, "'s model differs from rank 0's (its signature hash differs; the signatures, ",
               width, " bytes, are too large to compare entry by entry)", ranks_differ, rule);
  const ModelSignature ours = SignatureReader(broadcast_bytes(comm, bytes, lengths[0], 0), 0).read_all();
  const ModelSignature theirs = SignatureReader(broadcast_bytes(comm, bytes, lengths[r], r), r).read_all();
  std::string difference = first_difference(theirs, r, ours);
  if (difference.empty())  // equal entries, different hash: cannot happen with one build on every rank
    difference = detail::str_cat("rank ", r, "'s model signature hashes differently from rank 0's");
  EMBER_FAIL(context, ": ", difference, ranks_differ, rule);
}

void check_same_values_on_all_ranks(Communicator& comm, const std::vector<int64_t>& values,
                                    const std::vector<std::string>& names, const std::string& context,
                                    const std::string& hint) {
  EMBER_CHECK(values.size() == names.size() && values.size() <= 64, context, ": ", values.size(), " values and ",
              names.size(), " names (at most 64 values)");
  const int world = comm.world_size();
  if (world == 1) return;
  // The counts first, so the values can be gathered side by side (every message has a fixed size).
  const std::vector<int64_t> value_counts = all_gather_int64(comm, {static_cast<int64_t>(values.size())});
  for (int r = 1; r < world; ++r)
    EMBER_CHECK(value_counts[r] == value_counts[0], context, ": rank ", r, " compares ", value_counts[r],
                " values, rank 0 compares ", value_counts[0], " (ranks run different versions of the program)");
  const size_t k = values.size();
  if (k == 0) return;
  const std::vector<int64_t> all = all_gather_int64(comm, values);
  for (int r = 1; r < world; ++r)
    for (size_t i = 0; i < k; ++i)
      EMBER_CHECK(all[r * k + i] == all[i], context, ": rank ", r, "'s ", names[i], " is ", all[r * k + i],
                  ", rank 0's is ", all[i], hint);
}

void check_same_steps_per_epoch(Communicator& comm, int64_t steps) {
  const int world = comm.world_size();
  if (world == 1) return;
  const std::vector<int64_t> all = all_gather_int64(comm, {steps});
  for (int r = 1; r < world; ++r)
    EMBER_CHECK(all[r] == all[0], "DDP: rank ", r, " has ", all[r], " steps per epoch, rank 0 has ", all[0],
                ": every synced backward is a collective, so the ranks with more steps would wait for all-reduces "
                "the others never start (give every rank the same number of batches: the same data set size "
                "and batch size)");
}

}  // namespace ember::distributed
