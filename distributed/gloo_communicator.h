// GlooCommunicator: collectives on CPU tensors over TCP with Gloo (the library behind PyTorch's
// "gloo" backend), so CPU data parallelism needs no MPI. The ranks find each other through the
// job's store (store.h, rendezvous.h): each publishes its listening address there.
//
//   Rendezvous rv = rendezvous(detect_launch(InitMethod::Env));
//   auto comm = make_gloo_communicator(rv.store, rv.info.rank, rv.info.world_size);
//
// Gloo's collectives block, so each communicator runs them on its own worker thread, in the order
// they were started (every rank starts the same collectives in the same order, so they pair up);
// the *_async calls return at once and Work::wait() waits for the worker. Every collective has
// CommunicatorOptions::timeout from the moment the worker starts it: a peer that is gone or never
// calls makes it throw on every waiting rank, naming the op and the rank, and the communicator
// is unusable afterwards. abort() prints the reason and ends this process (exit code 1); the
// peers' collectives then fail on the closed connections within moments, and ember-run ends the
// rest of the job.
//
// Built only when CMake finds Gloo (Debian's libgloo-dev); otherwise gloo_communicator_stub.cpp
// makes the factory throw "built without Gloo".
#pragma once

#include <memory>
#include <string>

#include "distributed/communicator.h"
#include "distributed/store.h"

namespace ember::distributed {

bool gloo_available();

// Collective over the ranks sharing `store` (every rank 0..world_size-1 must call it). Connects a
// full mesh of TCP pairs, listening on `listen_host` (an address or name of this machine the
// other ranks can reach: "127.0.0.1" for one node; default: GLOO_SOCKET_IFNAME's interface if
// set, else this machine's host name). Start-up waits at most options.timeout.
std::shared_ptr<Communicator> make_gloo_communicator(std::shared_ptr<Store> store, int rank, int world_size,
                                                     const CommunicatorOptions& options = {},
                                                     const std::string& listen_host = "");

}  // namespace ember::distributed
