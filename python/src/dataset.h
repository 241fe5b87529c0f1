// zerodet.Sample, shared with detector.cc (Detector.detect takes a letterboxed sample as the
// model input without a copy).
#pragma once

#include <utility>

#include "common.h"
#include "zerodet/dataset/dataset.h"

namespace zerodet::python {

// zerodet.Sample: one sample, read-only: a view into the store, or the decoded copy of a sample
// the store had evicted and could not take back.
class PySample : public BufferExporter {
 public:
  PySample(dataset::Sample sample, size_t index) : sample_(std::move(sample)), index_(index) {}
  ~PySample() override { fork_.Dispose(sample_); }

  bool Layout(BufferLayout* layout) override {
    if (released_) {
      PyErr_SetString(PyExc_BufferError, "zerodet.Sample was released");
      return false;
    }
    const dataset::SampleInfo& info = sample_.info();
    layout->data = const_cast<uint8_t*>(sample_.bytes().data());
    layout->readonly = true;
    const bool floats = info.dtype == DType::kFloat32;
    layout->format = floats ? "f" : "B";
    layout->itemsize = floats ? 4 : 1;
    for (int64_t d : info.shape) layout->shape.push_back(static_cast<Py_ssize_t>(d));
    return true;
  }

  // Raises ClosedError after release() (the sample's description goes with its reference).
  const dataset::SampleInfo& info() const {
    if (released_) ThrowError("ClosedError", "the Sample was released");
    return sample_.info();
  }
  size_t index() const { return index_; }
  bool from_store() const { return sample_.from_store(); }
  bool released() const { return released_; }
  bool alive() const override { return !released_; }
  void Release() {
    if (released_) return;
    CheckNoExports("release the Sample");
    fork_.Dispose(sample_);
    released_ = true;
  }

 private:
  ForkOwned fork_;
  dataset::Sample sample_;
  size_t index_;
  bool released_ = false;
};

void BindDataset(py::module_& m);

}  // namespace zerodet::python
