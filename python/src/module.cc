// The zerodet._zerodet extension module: the store, datasets, rings and the detector. The
// package zerodet (python/zerodet/__init__.py) re-exports it with the pure-Python Dataset.
#include "common.h"
#include "dataset.h"
#include "store.h"

namespace zerodet::python {
void BindRing(py::module_& m);
void BindDetector(py::module_& m);
}  // namespace zerodet::python

PYBIND11_MODULE(_zerodet, m) {
  namespace zp = zerodet::python;
  m.doc() = "zerodet's C++ core: store, datasets, frame rings, detector (use the zerodet package)";
  zp::BindStore(m);
  zp::BindDataset(m);
  zp::BindRing(m);
  zp::BindDetector(m);
}
