// zerodet.Store, zerodet.StoreObject (a sealed object, read-only, zero copy), zerodet.StoreBuffer
// (an object being created) and zerodet.ObjectId.
//
// Arrays in the store. Store.put(id, ndarray) records the array's dtype and shape in the
// object's metadata, so any process gets it back as the same array. The metadata then starts
// with this header, followed by the caller's own metadata bytes (StoreObject.metadata):
//
//   offset 0  "ZDNA"   magic
//          4  uint8    version (1)
//          5  uint8    ndim (0..32)
//          6  uint16   0
//          8  char[8]  numpy dtype string, NUL-padded ("<f4", "|u1", "<c16")
//         16  int64    shape[ndim], little endian
//
// Objects without the header (bytes put from Python, objects made by C++ producers, dataset
// samples) read as 1-D uint8 arrays of their bytes.
#include "store.h"

#include <algorithm>
#include <cstring>
#include <span>

namespace zerodet::python {
namespace {

using store::ObjectBuffer;
using store::ObjectId;
using store::ObjectView;
using store::StoreClient;

constexpr char kArrayMagic[4] = {'Z', 'D', 'N', 'A'};
constexpr uint8_t kArrayVersion = 1;
constexpr size_t kMaxArrayDims = 32;
constexpr size_t kArrayHeaderBytes = 16;
// Copies larger than this run without the GIL (other Python threads go on meanwhile).
constexpr size_t kReleaseGilCopyBytes = 1 << 20;

struct ArrayLayout {
  const DTypeFormat* dtype = nullptr;  // null: plain bytes
  std::vector<Py_ssize_t> shape;
  size_t header_bytes = 0;  // metadata bytes taken by the header
};

// The array header of an object's metadata, when it has a valid one that fits its data size.
ArrayLayout ParseArrayHeader(std::span<const uint8_t> metadata, uint64_t data_size) {
  ArrayLayout layout;
  if (metadata.size() < kArrayHeaderBytes ||
      std::memcmp(metadata.data(), kArrayMagic, sizeof(kArrayMagic)) != 0 ||
      metadata[4] != kArrayVersion || metadata[5] > kMaxArrayDims) {
    return layout;
  }
  const size_t ndim = metadata[5];
  if (metadata.size() < kArrayHeaderBytes + 8 * ndim) return layout;
  char typestr[9] = {};
  std::memcpy(typestr, metadata.data() + 8, 8);
  const DTypeFormat* dtype = FindDType(typestr);
  if (dtype == nullptr) return layout;
  std::vector<Py_ssize_t> shape(ndim);
  uint64_t items = 1;
  for (size_t i = 0; i < ndim; ++i) {
    int64_t d = 0;
    std::memcpy(&d, metadata.data() + kArrayHeaderBytes + 8 * i, 8);
    if (d < 0 || (d > 0 && items > data_size / static_cast<uint64_t>(d))) return layout;
    items *= static_cast<uint64_t>(d);
    shape[i] = static_cast<Py_ssize_t>(d);
  }
  if (items * static_cast<uint64_t>(dtype->itemsize) != data_size) return layout;
  layout.dtype = dtype;
  layout.shape = std::move(shape);
  layout.header_bytes = kArrayHeaderBytes + 8 * ndim;
  return layout;
}

std::vector<uint8_t> MakeArrayHeader(const DTypeFormat& dtype, std::span<const Py_ssize_t> shape) {
  std::vector<uint8_t> header(kArrayHeaderBytes + 8 * shape.size(), 0);
  std::memcpy(header.data(), kArrayMagic, sizeof(kArrayMagic));
  header[4] = kArrayVersion;
  header[5] = static_cast<uint8_t>(shape.size());
  std::memcpy(header.data() + 8, dtype.typestr, std::strlen(dtype.typestr));
  for (size_t i = 0; i < shape.size(); ++i) {
    const auto d = static_cast<int64_t>(shape[i]);
    std::memcpy(header.data() + kArrayHeaderBytes + 8 * i, &d, 8);
  }
  return header;
}

std::span<const uint8_t> BytesOf(const py::bytes& bytes) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(bytes.ptr(), &data, &size) != 0) throw py::error_already_set();
  return {reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(size)};
}

// A C-contiguous buffer of a Python object, held while this lives. Raises ValueError for
// objects that export none or export strided memory.
class HeldBuffer {
 public:
  HeldBuffer(const py::handle& value, const char* what) {
    if (PyObject_GetBuffer(value.ptr(), &view_, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
      // Keep numpy's own reason ("ndarray is not C-contiguous", "cannot include dtype 'O'").
      py::error_already_set error;
      throw py::value_error(
          std::string(what) + " must be a C-contiguous numpy array or a bytes-like object (" +
          py::str(error.value()).cast<std::string>() + "); numpy.ascontiguousarray() makes one");
    }
    held_ = true;
  }
  ~HeldBuffer() {
    if (held_) PyBuffer_Release(&view_);
  }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  const Py_buffer& view() const { return view_; }
  std::span<const uint8_t> bytes() const {
    return {static_cast<const uint8_t*>(view_.buf), static_cast<size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

// A create's error: kResourceExhausted there always means the object does not fit (now or
// ever, or the object table is full), so it is a StoreFullError.
[[noreturn]] void ThrowCreateError(const Status& status) {
  if (status.code() == StatusCode::kResourceExhausted) {
    ThrowError("StoreFullError", status.message());
  }
  ThrowStatus(status);
}

template <typename T>
T CreatedOrThrow(Result<T> result) {
  if (!result.ok()) ThrowCreateError(result.status());
  return std::move(result).value();
}

void CopyMaybeWithoutGil(uint8_t* dst, std::span<const uint8_t> src) {
  if (src.size() >= kReleaseGilCopyBytes) {
    py::gil_scoped_release release;
    std::memcpy(dst, src.data(), src.size());
  } else if (!src.empty()) {
    std::memcpy(dst, src.data(), src.size());
  }
}

}  // namespace

// zerodet.StoreObject: a sealed object, read-only, pointing into the store's arena.
class PyStoreObject : public BufferExporter {
 public:
  explicit PyStoreObject(ObjectView view) : view_(std::move(view)) {
    layout_ = ParseArrayHeader(view_.metadata(), view_.data().size());
  }
  ~PyStoreObject() override { fork_.Dispose(view_); }

  bool Layout(BufferLayout* layout) override {
    if (!view_.valid()) {
      PyErr_SetString(PyExc_BufferError, "zerodet.StoreObject was released");
      return false;
    }
    layout->data = const_cast<uint8_t*>(view_.data().data());
    layout->readonly = true;
    if (layout_.dtype != nullptr) {
      layout->format = layout_.dtype->format;
      layout->itemsize = layout_.dtype->itemsize;
      layout->shape = layout_.shape;
    } else {
      layout->shape = {static_cast<Py_ssize_t>(view_.data().size())};
    }
    return true;
  }

  bool alive() const override { return view_.valid(); }
  const ObjectView& view(const char* what) const {
    if (!view_.valid())
      ThrowError("ClosedError", std::string("cannot ") + what + ": the StoreObject was released");
    return view_;
  }
  void Release() {
    if (!view_.valid()) return;
    CheckNoExports("release the StoreObject");
    fork_.Dispose(view_);
  }
  bool released() const { return !view_.valid(); }
  std::string dtype() const { return layout_.dtype != nullptr ? layout_.dtype->typestr : "|u1"; }
  py::tuple shape() const {
    if (layout_.dtype == nullptr) return py::make_tuple(view("read the shape").data().size());
    py::tuple t(layout_.shape.size());
    for (size_t i = 0; i < layout_.shape.size(); ++i) t[i] = layout_.shape[i];
    return t;
  }
  py::bytes metadata() const {
    const auto meta = view("read metadata").metadata().subspan(layout_.header_bytes);
    return py::bytes(reinterpret_cast<const char*>(meta.data()), meta.size());
  }

 private:
  ForkOwned fork_;
  ObjectView view_;
  ArrayLayout layout_;
};

// zerodet.StoreBuffer: an object being created; writable until seal() or abort().
class PyStoreBuffer : public BufferExporter {
 public:
  PyStoreBuffer(std::shared_ptr<StoreClient> client, ObjectBuffer buffer)
      : client_(std::move(client)), buffer_(std::move(buffer)) {}
  ~PyStoreBuffer() override {
    // An unsealed buffer dropped without seal() aborts its object (ObjectBuffer's destructor),
    // except in a forked child, where the request would go out on the parent's socket.
    fork_.Dispose(buffer_);
    fork_.Dispose(client_);
  }

  bool Layout(BufferLayout* layout) override {
    if (!buffer_.valid()) {
      PyErr_SetString(PyExc_BufferError, "zerodet.StoreBuffer was sealed or aborted");
      return false;
    }
    layout->data = buffer_.data().data();
    layout->readonly = false;
    layout->shape = {static_cast<Py_ssize_t>(buffer_.data().size())};
    return true;
  }

  bool alive() const override { return buffer_.valid(); }
  ObjectBuffer& buffer(const char* what) {
    fork_.CheckOwner("this StoreBuffer");
    if (!buffer_.valid()) {
      ThrowError("ClosedError",
                 std::string("cannot ") + what + ": the StoreBuffer was sealed or aborted");
    }
    return buffer_;
  }

  ObjectId Seal() {
    ObjectBuffer& buffer = this->buffer("seal");
    CheckNoWrites("seal");
    // Sealing unmaps the writable pages: an array still writing there would fault.
    CheckNoExports("seal the StoreBuffer");
    const ObjectId id = buffer.id();
    Status status;
    {
      py::gil_scoped_release release;
      status = client_->Seal(std::move(buffer));
    }
    OkOrThrow(status);
    return id;
  }

  void Abort() {
    ObjectBuffer& buffer = this->buffer("abort");
    CheckNoWrites("abort");
    CheckNoExports("abort the StoreBuffer");
    Status status;
    {
      py::gil_scoped_release release;
      status = client_->Abort(std::move(buffer));
    }
    OkOrThrow(status);
  }

  void Write(const py::handle& value, size_t offset) {
    ObjectBuffer& buffer = this->buffer("write");
    HeldBuffer src(value, "data");
    const size_t size = buffer.data().size();
    if (offset > size || src.bytes().size() > size - offset) {
      throw py::value_error("cannot write " + std::to_string(src.bytes().size()) +
                            " bytes at offset " + std::to_string(offset) + " into an object of " +
                            std::to_string(size) + " bytes");
    }
    // Another thread may call seal() while a large copy runs without the GIL: it must not
    // unmap the pages under the copy.
    ++writes_in_flight_;
    CopyMaybeWithoutGil(buffer.data().data() + offset, src.bytes());
    --writes_in_flight_;
  }

  bool finished() const { return !buffer_.valid(); }

 private:
  void CheckNoWrites(const char* action) const {
    if (writes_in_flight_ > 0) {
      throw py::buffer_error(std::string("cannot ") + action +
                             " the StoreBuffer: another thread is writing into it");
    }
  }

 public:
 private:
  ForkOwned fork_;
  std::shared_ptr<StoreClient> client_;
  ObjectBuffer buffer_;
  int writes_in_flight_ = 0;  // changed only with the GIL held
};

PyStore::PyStore(const std::string& socket, bool readonly) : socket_(socket), readonly_(readonly) {
  store::ConnectOptions options;
  options.access = readonly ? store::StoreAccess::kReadOnly : store::StoreAccess::kReadWrite;
  Result<std::unique_ptr<StoreClient>> client = [&] {
    py::gil_scoped_release release;
    return StoreClient::Connect(socket, options);
  }();
  client_ = ValueOrThrow(std::move(client));
}

PyStore::~PyStore() {
  fork_.Dispose(client_);
}

std::shared_ptr<StoreClient> PyStore::client() const {
  fork_.CheckOwner("this Store");
  if (client_ == nullptr) ThrowError("ClosedError", "store " + socket_ + " is closed");
  return client_;
}

void PyStore::Close() {
  fork_.CheckOwner("this Store");
  client_.reset();
}

namespace {

std::unique_ptr<PyStoreObject> Get(PyStore& self, const py::handle& id_value,
                                   const py::object& timeout) {
  const ObjectId id = IdFromPython(id_value);
  store::GetOptions options;
  options.timeout = TimeoutFromSeconds(timeout);
  const std::shared_ptr<StoreClient> client = self.client();
  Result<ObjectView> view = [&]() -> Result<ObjectView> {
    // A fast-path get (timeout 0) takes a fraction of a microsecond: dropping the GIL would
    // cost more than it runs.
    if (options.timeout.count() == 0) return client->Get(id, options);
    py::gil_scoped_release release;
    return client->Get(id, options);
  }();
  return std::make_unique<PyStoreObject>(ValueOrThrow(std::move(view)));
}

std::unique_ptr<PyStoreBuffer> Create(PyStore& self, const py::handle& id_value, uint64_t size,
                                      const py::bytes& metadata, bool pinned) {
  const ObjectId id = IdFromPython(id_value);
  const std::shared_ptr<StoreClient> client = self.client();
  store::CreateOptions options;
  options.pinned = pinned;
  const std::span<const uint8_t> meta = BytesOf(metadata);
  Result<ObjectBuffer> buffer = [&] {
    py::gil_scoped_release release;
    return client->Create(id, size, meta, options);
  }();
  return std::make_unique<PyStoreBuffer>(client, CreatedOrThrow(std::move(buffer)));
}

ObjectId Put(PyStore& self, const py::handle& id_value, const py::handle& value_in,
             const py::object& metadata_value, bool pinned) {
  const ObjectId id = IdFromPython(id_value);
  // numpy scalars (numpy.float32(1), a 0-d comparison result) are stored as 0-d arrays.
  py::object value = py::reinterpret_borrow<py::object>(value_in);
  if (!py::isinstance<py::array>(value) && py::hasattr(value, "dtype") &&
      py::hasattr(value, "shape")) {
    value = AsArray(value);
  }
  const std::shared_ptr<StoreClient> client = self.client();
  std::vector<uint8_t> metadata;
  HeldBuffer src(value, "value");
  if (py::isinstance<py::array>(value)) {
    const Py_buffer& view = src.view();
    const DTypeFormat* dtype = FindFormat(view.format != nullptr ? view.format : "B");
    if (dtype == nullptr || dtype->itemsize != view.itemsize) {
      throw py::value_error("cannot store an array of dtype " +
                            py::str(value.attr("dtype")).cast<std::string>() +
                            ": the store carries " + SupportedDTypes());
    }
    if (static_cast<size_t>(view.ndim) > kMaxArrayDims) {
      throw py::value_error("cannot store an array of " + std::to_string(view.ndim) +
                            " dimensions (at most 32)");
    }
    metadata = MakeArrayHeader(*dtype, {view.shape, static_cast<size_t>(view.ndim)});
  }
  if (!metadata_value.is_none()) {
    const std::span<const uint8_t> extra = BytesOf(py::bytes(metadata_value));
    metadata.insert(metadata.end(), extra.begin(), extra.end());
  }
  store::CreateOptions options;
  options.pinned = pinned;
  Result<ObjectBuffer> created = [&] {
    py::gil_scoped_release release;
    return client->Create(id, src.bytes().size(), metadata, options);
  }();
  ObjectBuffer buffer = CreatedOrThrow(std::move(created));
  CopyMaybeWithoutGil(buffer.data().data(), src.bytes());
  Status sealed;
  {
    py::gil_scoped_release release;
    sealed = client->Seal(std::move(buffer));
  }
  OkOrThrow(sealed);
  return id;
}

std::vector<ObjectId> IdsFromPython(const py::handle& ids) {
  std::vector<ObjectId> out;
  if (py::isinstance<py::str>(ids) || py::isinstance<py::bytes>(ids) ||
      py::isinstance<ObjectId>(ids)) {
    out.push_back(IdFromPython(ids));
    return out;
  }
  for (const py::handle item : ids) out.push_back(IdFromPython(item));
  return out;
}

py::dict StatsDict(const store::StoreStats& s) {
  py::dict d;
  d["capacity"] = s.capacity;
  d["bytes_allocated"] = s.bytes_allocated;
  d["largest_free_block"] = s.largest_free_block;
  d["objects"] = s.objects;
  d["sealed_objects"] = s.sealed_objects;
  d["unsealed_objects"] = s.unsealed_objects;
  d["pending_deletes"] = s.pending_deletes;
  d["max_objects"] = s.max_objects;
  d["clients"] = s.clients;
  d["connections"] = s.connections;
  d["evictions"] = s.evictions;
  d["creates"] = s.creates;
  d["socket_gets"] = s.socket_gets;
  d["pinned_objects"] = s.pinned_objects;
  d["pinned_bytes"] = s.pinned_bytes;
  d["unsealed_bytes"] = s.unsealed_bytes;
  d["pending_delete_bytes"] = s.pending_delete_bytes;
  d["refused_connections"] = s.refused_connections;
  d["hello_timeouts"] = s.hello_timeouts;
  d["waiting_gets"] = s.waiting_gets;
  return d;
}

}  // namespace

void BindStore(py::module_& m) {
  py::class_<ObjectId>(m, "ObjectId", R"doc(
The 20-byte key of a store object (the size Plasma and Ray use).

Store methods take an ObjectId, a str (the id of that name: SHA-1 of it, so independent
processes agree on it) or 20 raw bytes. Immutable, hashable, picklable.
)doc")
      .def(py::init([](const py::bytes& raw) { return IdFromPython(raw); }), py::arg("binary"),
           "The id whose 20 bytes are `binary`.")
      .def_static("from_name", &ObjectId::FromName, py::arg("name"),
                  "The id of `name` (SHA-1 of it), as ObjectId::FromName in C++.")
      .def_static(
          "from_hex", [](const std::string& hex) { return ValueOrThrow(ObjectId::FromHex(hex)); },
          py::arg("hex"), "Parses 40 hex digits.")
      .def("hex", &ObjectId::ToHex, "40 lower-case hex digits.")
      .def(
          "binary",
          [](const ObjectId& id) {
            return py::bytes(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
          },
          "The 20 bytes.")
      .def("__eq__", [](const ObjectId& a, const ObjectId& b) { return a == b; })
      .def("__eq__", [](const ObjectId&, const py::object&) { return false; })
      .def("__hash__", [](const ObjectId& id) { return std::hash<ObjectId>()(id); })
      .def("__repr__", [](const ObjectId& id) { return "ObjectId('" + id.ToHex() + "')"; })
      .def(py::pickle(
          [](const ObjectId& id) {
            return py::make_tuple(
                py::bytes(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size()));
          },
          [](const py::tuple& t) { return IdFromPython(t[0]); }));

  py::class_<PyStoreObject> object(m, "StoreObject", py::buffer_protocol(), R"doc(
A sealed store object: read-only memory in the store's shared arena, no copy.

Exposes the buffer protocol: ``numpy.asarray(obj)`` (or ``obj.array()``) is a read-only array
of the object's dtype and shape (as stored by Store.put of an array; otherwise 1-D uint8 of its
bytes), and ``memoryview(obj)`` works too. While the StoreObject or any array or memoryview made
from it lives, the store neither evicts nor frees the object, and its bytes never change; the
reference is dropped when the last of them is garbage-collected, or by release() once no array
is left. Arrays stay valid after their Store is closed or the store process has stopped.
Use it from one thread at a time.
)doc");
  object
      .def_property_readonly(
          "id", [](const PyStoreObject& o) { return o.view("read the id").id(); },
          "The object's ObjectId.")
      .def_property_readonly(
          "nbytes", [](const PyStoreObject& o) { return o.view("read nbytes").data().size(); },
          "Bytes of data.")
      .def_property_readonly("dtype", &PyStoreObject::dtype,
                             "numpy dtype string of the array view ('<f4', '|u1', ...).")
      .def_property_readonly("shape", &PyStoreObject::shape, "Shape of the array view.")
      .def_property_readonly("metadata", &PyStoreObject::metadata,
                             "The metadata bytes given to put()/create() (a copy).")
      .def_property_readonly("released", &PyStoreObject::released, "True after release().")
      .def(
          "array",
          [](py::object self) {
            return ExportArray(self, py::cast<PyStoreObject&>(self), "StoreObject");
          },
          "A read-only numpy array over the object (no copy); it keeps the object referenced.")
      .def("release", &PyStoreObject::Release, R"doc(
Drops the store reference now (otherwise dropped when this object is garbage-collected).
Raises BufferError while arrays or memoryviews made from it are alive. Idempotent.)doc")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyStoreObject& o, const py::args&) {
             o.Release();
             return false;
           })
      .def("__len__", [](const PyStoreObject& o) { return o.view("len").data().size(); })
      .def("__repr__", [](const PyStoreObject& o) {
        if (o.released()) return std::string("<zerodet.StoreObject released>");
        return "<zerodet.StoreObject " + o.view("repr").id().ToHex() + " dtype=" + o.dtype() +
               " shape=" + py::str(o.shape()).cast<std::string>() + ">";
      });
  EnableExports(object);

  py::class_<PyStoreBuffer> buffer(m, "StoreBuffer", py::buffer_protocol(), R"doc(
An object being created: writable shared memory until seal() or abort().

Fill it through the buffer protocol (``numpy.frombuffer(buf, dtype=numpy.uint8)`` is a writable
view, ``memoryview(buf)[:]`` = ...) or write(); then seal() makes it immutable and visible to
every reader. seal() and abort() raise BufferError while arrays or memoryviews of the buffer are
alive (sealing unmaps the writable pages). A buffer garbage-collected without either is aborted.
As a context manager it seals on a clean exit and aborts on an exception.
)doc");
  buffer.def("seal", &PyStoreBuffer::Seal, "Seals the object; returns its ObjectId.")
      .def("abort", &PyStoreBuffer::Abort, "Discards the object.")
      .def("write", &PyStoreBuffer::Write, py::arg("data"), py::arg("offset") = 0,
           "Copies a bytes-like object or C-contiguous array into the object at `offset`.")
      .def_property_readonly(
          "id", [](PyStoreBuffer& b) { return b.buffer("read the id").id(); }, "The ObjectId.")
      .def_property_readonly(
          "nbytes", [](PyStoreBuffer& b) { return b.buffer("read nbytes").data().size(); },
          "Size in bytes.")
      .def_property_readonly("finished", &PyStoreBuffer::finished, "True after seal() or abort().")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyStoreBuffer& b, const py::object& type, const py::object&, const py::object&) {
             if (b.finished()) return false;
             if (type.is_none()) {
               b.Seal();
             } else {
               b.Abort();
             }
             return false;
           });
  EnableExports(buffer);

  py::class_<PyStore>(m, "Store", R"doc(
A connection to a zerodet store (``zerodet store --socket PATH``): the shared-memory object store
that replaces Plasma.

    store = zerodet.Store("/tmp/zd.sock")
    store.put("weights", numpy.arange(10, dtype=numpy.float32))
    a = store.get("weights").array()     # read-only float32 view into shared memory

Ids are a zerodet.ObjectId, a str (the id of that name) or 20 bytes. Errors are zerodet.Error
subclasses that are also the built-in exceptions: NotFoundError (KeyError), StoreFullError,
DeadlineExceededError (TimeoutError), UnavailableError (ConnectionError: the store is gone),
PermissionDeniedError (PermissionError), AlreadyExistsError (FileExistsError),
InvalidArgumentError (ValueError).

Thread-safe: any thread may call any method; waits release the GIL. After a fork, open a new
Store in the child (the parent's raises ForkError there); the child never drops the parent's
references. Objects and arrays it returned outlive close().
)doc")
      .def(py::init<const std::string&, bool>(), py::arg("socket"), py::kw_only(),
           py::arg("readonly") = false, R"doc(
Connects to the store serving `socket`. readonly=True connects read-only (get, contains, list,
stats): the arena is mapped through a descriptor that cannot be made writable.
Raises UnavailableError when nothing serves the path, PermissionDeniedError when the store refuses
this user (or read-write access), ResourceExhaustedError when it has too many clients.)doc")
      .def("get", &Get, py::arg("id"), py::arg("timeout") = 0.0, R"doc(
The sealed object `id` as a StoreObject (no copy). timeout: seconds to wait for the object to be
created and sealed (0: do not wait; None: without limit); the GIL is released while waiting.
Raises NotFoundError (a KeyError) when it is not there with timeout 0, DeadlineExceededError (a
TimeoutError) when the wait runs out, UnavailableError when the store is gone.)doc")
      .def(
          "contains",
          [](PyStore& self, const py::handle& id) {
            return self.client()->Contains(IdFromPython(id));
          },
          py::arg("id"), "Whether a sealed, not deleted object `id` exists now.")
      .def("__contains__",
           [](PyStore& self, const py::handle& id) {
             return self.client()->Contains(IdFromPython(id));
           })
      .def("put", &Put, py::arg("id"), py::arg("value"), py::kw_only(),
           py::arg("metadata") = py::none(), py::arg("pinned") = false, R"doc(
Creates, fills and seals object `id` from a numpy array (its dtype and shape are kept: get()
returns the same array) or a bytes-like object (read back as uint8). One copy, without the GIL
for large values. metadata: extra bytes stored with it. pinned: never evicted (only delete()
removes it). Returns the ObjectId.
Raises ValueError for non-contiguous arrays or unsupported dtypes, AlreadyExistsError when the
id exists, StoreFullError when it cannot fit.)doc")
      .def("create", &Create, py::arg("id"), py::arg("size"), py::kw_only(),
           py::arg("metadata") = py::bytes(), py::arg("pinned") = false, R"doc(
Allocates object `id` of `size` bytes and returns a writable StoreBuffer: fill it, then seal()
it (or use it as a context manager). Raises as put().)doc")
      .def(
          "delete",
          [](PyStore& self, const py::handle& ids) {
            const std::vector<ObjectId> list = IdsFromPython(ids);
            const std::shared_ptr<StoreClient> client = self.client();
            Status status;
            {
              py::gil_scoped_release release;
              status = client->Delete(list);
            }
            OkOrThrow(status);
          },
          py::arg("ids"), R"doc(
Deletes one id or an iterable of ids. A referenced object disappears from get() at once and is
freed when its last StoreObject and array are gone. Raises NotFoundError for an id that does not
exist (the others are still deleted).)doc")
      .def(
          "list",
          [](PyStore& self) {
            const std::shared_ptr<StoreClient> client = self.client();
            Result<std::vector<store::ObjectInfo>> infos = [&] {
              py::gil_scoped_release release;
              return client->List();
            }();
            py::list out;
            for (const store::ObjectInfo& info : ValueOrThrow(std::move(infos))) {
              py::dict d;
              d["id"] = info.id;
              d["data_size"] = info.data_size;
              d["metadata_size"] = info.metadata_size;
              d["sealed"] = info.sealed;
              d["pending_delete"] = info.pending_delete;
              d["pinned"] = info.pinned;
              out.append(d);
            }
            return out;
          },
          "Every object: dicts of id, data_size, metadata_size, sealed, pending_delete, pinned.")
      .def(
          "stats",
          [](PyStore& self) {
            const std::shared_ptr<StoreClient> client = self.client();
            Result<store::StoreStats> stats = [&] {
              py::gil_scoped_release release;
              return client->Stats();
            }();
            return StatsDict(ValueOrThrow(std::move(stats)));
          },
          "The store's counters (capacity, bytes_allocated, objects, clients, evictions, ...).")
      .def("close", &PyStore::Close,
           "Closes the connection. Objects and arrays already returned stay valid. Idempotent.")
      .def_property_readonly("closed", &PyStore::closed)
      .def_property_readonly("socket", &PyStore::socket)
      .def_property_readonly("readonly", &PyStore::readonly)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyStore& self, const py::args&) {
             self.Close();
             return false;
           })
      .def("__repr__", [](const PyStore& self) {
        return "<zerodet.Store " + self.socket() + (self.closed() ? " closed>" : ">");
      });
}

}  // namespace zerodet::python
