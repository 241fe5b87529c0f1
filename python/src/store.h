// zerodet.Store and the objects it hands out, for the other binding files (dataset.cc shares a
// Store's client).
#pragma once

#include <memory>
#include <string>

#include "common.h"
#include "zerodet/store/client.h"

namespace zerodet::python {

// zerodet.Store: one connection to a store (store::StoreClient). The client is shared with
// the datasets opened on it and with every view and buffer it handed out (their mappings stay
// valid after close()). Used under the GIL; blocking waits release it (the client itself is
// thread-safe).
class PyStore {
 public:
  PyStore(const std::string& socket, bool readonly);
  ~PyStore();

  // The client; raises ClosedError after close() and ForkError in a forked child. A copy: a
  // call that runs without the GIL keeps the client alive while another thread closes.
  std::shared_ptr<store::StoreClient> client() const;
  void Close();
  bool closed() const { return client_ == nullptr; }
  const std::string& socket() const { return socket_; }
  bool readonly() const { return readonly_; }

 private:
  ForkOwned fork_;
  std::shared_ptr<store::StoreClient> client_;
  std::string socket_;
  bool readonly_;
};

void BindStore(py::module_& m);

}  // namespace zerodet::python
