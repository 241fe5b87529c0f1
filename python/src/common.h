// Shared pieces of the zerodet Python extension: Status -> Python exceptions, fork ownership,
// the read-only/writable buffer protocol the store, dataset and ring objects export, and
// conversions of timeouts and object ids.
//
// Everything here runs with the GIL held unless a comment says otherwise.
#pragma once

#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/store/object_id.h"

namespace zerodet::python {

namespace py = pybind11;

// Which Python exception a kNotFound means: a missing store object or dataset (KeyError) or a
// missing file (FileNotFoundError).
enum class NotFoundKind { kKey, kFile };

// Raises the zerodet.errors class of `status` (see python/zerodet/errors.py) with its message.
// REQUIRES: !status.ok(), the GIL held.
[[noreturn]] void ThrowStatus(const Status& status, NotFoundKind not_found = NotFoundKind::kKey);
// Raises zerodet.errors.<name>(message), e.g. ("ClosedError", "store is closed").
[[noreturn]] void ThrowError(const char* name, const std::string& message);

template <typename T>
T ValueOrThrow(Result<T> result, NotFoundKind not_found = NotFoundKind::kKey) {
  if (!result.ok()) ThrowStatus(result.status(), not_found);
  return std::move(result).value();
}
inline void OkOrThrow(const Status& status, NotFoundKind not_found = NotFoundKind::kKey) {
  if (!status.ok()) ThrowStatus(status, not_found);
}

// Fork ownership. The store's reference slots and a ring's holder bits are shared memory: a
// forked child that destroyed the copies of its parent's views, frames, readers or clients
// would drop the parent's references (the store could then evict an object the parent still
// reads) or detach the parent's reader. Every wrapper remembers the process that made it; in
// any other process its destructor leaks the C++ object instead of running it, and its methods
// refuse to run (a copied socket would interleave the two processes' requests).
class ForkOwned {
 public:
  ForkOwned() : owner_pid_(::getpid()) {}
  bool owned_here() const { return owner_pid_ == ::getpid(); }
  // Raises ForkError when called in a process other than the creator.
  void CheckOwner(const char* what) const;

  // Destroys `object` in its creating process; leaks it in any other.
  template <typename T>
  void Dispose(T& object) const {
    if (!owned_here()) {
      // Moved into a heap object that is never freed: its destructor never runs here.
      new T(std::move(object));
    }
    object = T();
  }

 private:
  pid_t owner_pid_;
};

// How one object exports its memory through the buffer protocol (PEP 3118).
struct BufferLayout {
  void* data = nullptr;
  bool readonly = true;
  const char* format = "B";  // struct-module format of one item
  Py_ssize_t itemsize = 1;
  std::vector<Py_ssize_t> shape;
  std::vector<Py_ssize_t> strides;  // bytes; empty: C-contiguous
};

// Objects that export buffers derive from this and describe their memory in Layout(). The count
// of live exports lets release(), seal() and close() refuse while a numpy array or memoryview
// still points into the memory.
class BufferExporter {
 public:
  virtual ~BufferExporter() = default;
  // False (with a Python error set) when there is nothing to export any more.
  virtual bool Layout(BufferLayout* layout) = 0;
  // False once released (sealed, aborted): nothing left to export.
  virtual bool alive() const = 0;
  int exports() const { return exports_; }
  // Raises BufferError naming `action` while exports exist.
  void CheckNoExports(const char* action) const;

 private:
  template <typename T>
  friend int GetBuffer(PyObject* self, Py_buffer* view, int flags);
  template <typename T>
  friend void ReleaseBuffer(PyObject* self, Py_buffer* view);
  int exports_ = 0;
};

namespace internal {
int FillBuffer(PyObject* self, BufferExporter& exporter, Py_buffer* view, int flags);
void EmptyBuffer(Py_buffer* view);
}  // namespace internal

template <typename T>
int GetBuffer(PyObject* self, Py_buffer* view, int flags) {
  view->obj = nullptr;
  T* object = nullptr;
  try {
    object = py::cast<T*>(py::handle(self));
  } catch (const std::exception&) {
    PyErr_SetString(PyExc_BufferError, "zerodet: object not initialized");
    return -1;
  }
  const int rc = internal::FillBuffer(self, *object, view, flags);
  if (rc == 0) ++object->exports_;
  return rc;
}

template <typename T>
void ReleaseBuffer(PyObject* self, Py_buffer* view) {
  internal::EmptyBuffer(view);
  try {
    --py::cast<T*>(py::handle(self))->exports_;
  } catch (const std::exception&) {
  }
}

// Replaces pybind11's buffer functions of `cls` (declared with py::buffer_protocol()) by ours,
// which count exports and describe strided, read-only memory.
template <typename T, typename... Options>
void EnableExports(py::class_<T, Options...>& cls) {
  auto* heap = reinterpret_cast<PyHeapTypeObject*>(cls.ptr());
  heap->as_buffer.bf_getbuffer = &GetBuffer<T>;
  heap->as_buffer.bf_releasebuffer = &ReleaseBuffer<T>;
}

// numpy.asarray(obj): a numpy array over obj's exported buffer (no copy; the array keeps obj
// alive through a memoryview).
py::array AsArray(py::handle obj);
// AsArray of an exporter's Python object; raises ClosedError once it is released (numpy would
// otherwise quietly make a 0-d object array of it).
py::array ExportArray(py::handle self, const BufferExporter& exporter, const char* what);

// A timeout in seconds from Python: None waits without limit, 0 does not wait. Raises ValueError
// for NaN and negative values.
std::chrono::milliseconds TimeoutFromSeconds(const py::object& seconds);

// Numpy type strings ('<f4', '|u1', ...) and the struct formats of the buffer protocol.
struct DTypeFormat {
  const char* typestr;  // numpy dtype.str
  const char* format;   // struct-module format
  Py_ssize_t itemsize;
};
// The entry for a numpy type string, or null when the store does not carry that dtype.
const DTypeFormat* FindDType(std::string_view typestr);
// The entry for a buffer format (with an optional byte-order prefix of this machine), or null.
const DTypeFormat* FindFormat(std::string_view format);
// Every dtype a store object can carry, for error messages.
std::string SupportedDTypes();

// An object id from Python: a zerodet.ObjectId, a str (the id of that name, as
// ObjectId::FromName) or 20 bytes (the id itself). Raises TypeError / ValueError otherwise.
store::ObjectId IdFromPython(const py::handle& value);

}  // namespace zerodet::python
