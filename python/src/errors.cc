// Status -> Python exceptions, the buffer-protocol helpers and the conversions of common.h.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "common.h"

namespace zerodet::python {
namespace {

// zerodet.errors, imported once. Leaked on purpose: a static py::object would be destroyed
// after the interpreter is gone.
py::handle ErrorsModule() {
  static py::handle module = py::module_::import("zerodet.errors").release();
  return module;
}

const char* ErrorClassName(const Status& status, NotFoundKind not_found) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return "InvalidArgumentError";
    case StatusCode::kNotFound:
      return not_found == NotFoundKind::kFile ? "FileNotFoundError_" : "NotFoundError";
    case StatusCode::kAlreadyExists:
      return "AlreadyExistsError";
    case StatusCode::kCorruptData:
      return "CorruptDataError";
    case StatusCode::kResourceExhausted:
      // The store says "store full" (client.h) when no eviction can make room.
      return status.message().find("store full") != std::string::npos ? "StoreFullError"
                                                                      : "ResourceExhaustedError";
    case StatusCode::kFailedPrecondition:
      return "FailedPreconditionError";
    case StatusCode::kUnimplemented:
      return "UnimplementedError";
    case StatusCode::kUnavailable:
      return "UnavailableError";
    case StatusCode::kDeadlineExceeded:
      return "DeadlineExceededError";
    case StatusCode::kPermissionDenied:
      return "PermissionDeniedError";
    case StatusCode::kIoError:
      return "IoError";
    case StatusCode::kOk:
    case StatusCode::kInternal:
      break;
  }
  return "InternalError";
}

// numpy dtype strings for a little-endian machine (every platform zerodet builds on).
constexpr DTypeFormat kDTypes[] = {
    {"|b1", "?", 1}, {"|i1", "b", 1}, {"|u1", "B", 1},  {"<i2", "h", 2},    {"<u2", "H", 2},
    {"<i4", "i", 4}, {"<u4", "I", 4}, {"<i8", "q", 8},  {"<u8", "Q", 8},    {"<f2", "e", 2},
    {"<f4", "f", 4}, {"<f8", "d", 8}, {"<c8", "Zf", 8}, {"<c16", "Zd", 16},
};
static_assert(std::endian::native == std::endian::little, "dtype table assumes little endian");

}  // namespace

void ThrowError(const char* name, const std::string& message) {
  py::object cls = ErrorsModule().attr(name);
  PyErr_SetObject(cls.ptr(), py::str(message).ptr());
  throw py::error_already_set();
}

void ThrowStatus(const Status& status, NotFoundKind not_found) {
  ThrowError(ErrorClassName(status, not_found), status.message());
}

void ForkOwned::CheckOwner(const char* what) const {
  if (!owned_here()) {
    ThrowError("ForkError", std::string(what) + " was opened in process " +
                                std::to_string(owner_pid_) + " and cannot be used in process " +
                                std::to_string(::getpid()) +
                                " (forked from it): open a new one in this process");
  }
}

void BufferExporter::CheckNoExports(const char* action) const {
  if (exports_ > 0) {
    throw py::buffer_error(std::string("cannot ") + action + ": " + std::to_string(exports_) +
                           " numpy array(s) or memoryview(s) still point into its memory "
                           "(delete them first)");
  }
}

namespace internal {
namespace {

bool IsCContiguous(const BufferLayout& layout) {
  if (layout.strides.empty()) return true;
  Py_ssize_t expected = layout.itemsize;
  for (size_t i = layout.shape.size(); i-- > 0;) {
    if (layout.shape[i] > 1 && layout.strides[i] != expected) return false;
    expected *= layout.shape[i];
  }
  return true;
}

// What a Py_buffer owns beyond the exporter: its shape and strides arrays.
struct Owned {
  std::vector<Py_ssize_t> shape;
  std::vector<Py_ssize_t> strides;
};

}  // namespace

int FillBuffer(PyObject* self, BufferExporter& exporter, Py_buffer* view, int flags) {
  BufferLayout layout;
  if (!exporter.Layout(&layout)) return -1;
  if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE && layout.readonly) {
    PyErr_SetString(PyExc_BufferError,
                    "zerodet shared memory is read-only (copy it to write: numpy.array(obj))");
    return -1;
  }
  const bool contiguous = IsCContiguous(layout);
  if (!contiguous && (flags & PyBUF_STRIDES) != PyBUF_STRIDES) {
    PyErr_SetString(PyExc_BufferError, "zerodet buffer has padded rows: ask for strides");
    return -1;
  }
  if (!contiguous && ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS ||
                      (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS)) {
    PyErr_SetString(PyExc_BufferError, "zerodet buffer is not contiguous (padded rows)");
    return -1;
  }
  if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && layout.shape.size() > 1) {
    PyErr_SetString(PyExc_BufferError, "zerodet buffers are C-ordered, not Fortran-ordered");
    return -1;
  }
  auto owned = std::make_unique<Owned>();
  owned->shape = layout.shape;
  owned->strides = layout.strides;
  if (owned->strides.empty()) {
    owned->strides.resize(owned->shape.size());
    Py_ssize_t stride = layout.itemsize;
    for (size_t i = owned->shape.size(); i-- > 0;) {
      owned->strides[i] = stride;
      stride *= owned->shape[i];
    }
  }
  Py_ssize_t items = 1;
  for (Py_ssize_t d : owned->shape) items *= d;
  view->buf = layout.data;
  view->obj = Py_NewRef(self);
  view->len = items * layout.itemsize;
  view->readonly = layout.readonly ? 1 : 0;
  view->itemsize = layout.itemsize;
  view->format = (flags & PyBUF_FORMAT) != 0 ? const_cast<char*>(layout.format) : nullptr;
  view->ndim = static_cast<int>(owned->shape.size());
  view->shape = (flags & PyBUF_ND) == PyBUF_ND ? owned->shape.data() : nullptr;
  view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? owned->strides.data() : nullptr;
  view->suboffsets = nullptr;
  view->internal = owned.release();
  return 0;
}

void EmptyBuffer(Py_buffer* view) {
  delete static_cast<Owned*>(view->internal);
  view->internal = nullptr;
}

}  // namespace internal

py::array AsArray(py::handle obj) {
  static py::handle asarray = py::object(py::module_::import("numpy").attr("asarray")).release();
  PyObject* array = PyObject_CallOneArg(asarray.ptr(), obj.ptr());
  if (array == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::array>(array);
}

py::array ExportArray(py::handle self, const BufferExporter& exporter, const char* what) {
  if (!exporter.alive()) ThrowError("ClosedError", std::string("the ") + what + " was released");
  return AsArray(self);
}

std::chrono::milliseconds TimeoutFromSeconds(const py::object& seconds) {
  if (seconds.is_none()) return std::chrono::milliseconds(-1);
  const double s = py::cast<double>(seconds);
  if (std::isnan(s) || s < 0) {
    throw py::value_error("timeout must be None (wait without limit) or seconds >= 0, not " +
                          std::string(py::str(seconds)));
  }
  // Beyond a year is "without limit" (and keeps the conversion in range).
  if (s > 365.0 * 24 * 3600) return std::chrono::milliseconds(-1);
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(s * 1000.0)));
}

const DTypeFormat* FindDType(std::string_view typestr) {
  for (const DTypeFormat& entry : kDTypes) {
    if (typestr == entry.typestr) return &entry;
  }
  return nullptr;
}

const DTypeFormat* FindFormat(std::string_view format) {
  if (!format.empty() && (format[0] == '<' || format[0] == '@' || format[0] == '=')) {
    format.remove_prefix(1);
  }
  // C long and unsigned long are 64-bit here (LP64): numpy's int64 exports "l".
  if (format == "l") format = "q";
  if (format == "L") format = "Q";
  for (const DTypeFormat& entry : kDTypes) {
    if (format == entry.format) return &entry;
  }
  return nullptr;
}

std::string SupportedDTypes() {
  return "bool, int8/16/32/64, uint8/16/32/64, float16/32/64, complex64/128 (native byte "
         "order)";
}

store::ObjectId IdFromPython(const py::handle& value) {
  if (py::isinstance<store::ObjectId>(value)) return py::cast<store::ObjectId>(value);
  if (py::isinstance<py::str>(value)) {
    return store::ObjectId::FromName(py::cast<std::string>(value));
  }
  if (py::isinstance<py::bytes>(value)) {
    const std::string raw = py::cast<std::string>(value);
    if (raw.size() != store::ObjectId::kSize) {
      throw py::value_error("an object id as bytes has 20 bytes, not " +
                            std::to_string(raw.size()) +
                            " (use a str for an id derived from a name)");
    }
    store::ObjectId id;
    std::memcpy(id.bytes.data(), raw.data(), raw.size());
    return id;
  }
  throw py::type_error("object id must be a zerodet.ObjectId, a str (a name) or 20 bytes, not " +
                       std::string(py::str(py::type::of(value).attr("__name__"))));
}

}  // namespace zerodet::python
