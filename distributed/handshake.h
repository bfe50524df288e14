// Start-up agreement for data-parallel training.
//
// Every rank of a DDP job derives the sizes of its collectives locally: the broadcast of the
// initial parameters from its own model, the gradient buckets from its own parameter list, the
// number of synced steps from its own data. If one rank derived something else (another model, a
// frozen layer, a smaller data set), the collectives no longer match: MPI then reads past a buffer
// ("free(): invalid size") or one rank waits for a peer that has already moved on. So before the
// first such collective every rank checks that it agrees with rank 0, and a disagreement is one
// Error, thrown on every rank, naming both ranks and the first entry that differs.
//
// Every message is bounded: the fast path exchanges a fixed-size record per rank (the encoded
// signature's length and 64-bit hash); only on a mismatch are two full signatures broadcast, rank
// 0's and the first differing rank's, each at most kMaxSignatureBytes, so every rank can say
// exactly what differs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "distributed/communicator.h"

namespace ember::distributed {

// One tensor of a model as the handshake compares it.
struct SignatureEntry {
  enum class Kind : uint8_t { Parameter, Buffer };
  Kind kind = Kind::Parameter;
  std::string name;
  Shape shape;
  DType dtype = DType::Float32;
  bool requires_grad = false;  // decides whether DDP reduces the parameter's gradient
};
// Parameters, then buffers, each in registration order (the order DDP communicates them in).
using ModelSignature = std::vector<SignatureEntry>;

// A signature larger than this (encoded) is compared by hash only; far above any real model's.
inline constexpr int64_t kMaxSignatureBytes = int64_t{16} << 20;

// Collective. Throws, on every rank alike, an Error starting with `context` (e.g. "DDP start-up")
// when some rank's signature differs from rank 0's, e.g.
//   "DDP start-up: rank 1's parameter 'fc2.weight' has shape [10, 64], rank 0's has [10, 128] ..."
// Uses all_gather on comm.device(); bounded by the communicator's timeout like any collective.
void check_same_signature_on_all_ranks(Communicator& comm, const ModelSignature& mine, const std::string& context);

// Collective. Every rank passes its own `values` (the same count on every rank, at most 64): each
// is named by `names` (same length). Throws, on every rank alike, "<context>: rank R's <name> is X,
// rank 0's is Y" for the first rank and value that differ from rank 0's. `hint` is appended.
void check_same_values_on_all_ranks(Communicator& comm, const std::vector<int64_t>& values,
                                    const std::vector<std::string>& names, const std::string& context,
                                    const std::string& hint = "");

// Collective: every rank must run the same number of synced steps per epoch, or the ranks with more
// wait for an all-reduce that the others never start. Throws on every rank, e.g. "DDP: rank 1 has 7
// steps per epoch, rank 0 has 13 ...".
void check_same_steps_per_epoch(Communicator& comm, int64_t steps);

}  // namespace ember::distributed
