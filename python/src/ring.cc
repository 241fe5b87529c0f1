// zerodet.RingReader, zerodet.Frame and zerodet.RingWriter over ring/frame_ring.h.
//
// A RingReader is used by one thread at a time (C++ contract), but Python may drop a Frame on
// any thread, including while another thread waits in read() without the GIL. So each reader
// has a mutex held around every C++ call; a frame released while the mutex is busy parks its
// lease in a queue that the reader drains as soon as its current call ends. A frame is thus
// given back immediately, or at the latest when the read in progress returns.
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "common.h"
#include "zerodet/core/clock.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::python {
namespace {

using ring::FrameLease;
using ring::RingReader;
using ring::RingWriter;

// Slices of a wait without limit, between which Ctrl-C (KeyboardInterrupt) is noticed.
constexpr std::chrono::milliseconds kWaitSlice{100};

// The C++ reader, shared by the Python reader and every frame it handed out: a frame keeps the
// reader attached (FrameLease must not outlive its RingReader), so close() detaches only once
// the last frame is released.
struct ReaderState {
  std::mutex mu;  // held around every use of `reader`
  std::unique_ptr<RingReader> reader;
  std::mutex parked_mu;
  std::deque<FrameLease> parked;  // released while `mu` was busy

  // REQUIRES: mu held.
  void DrainParked() {
    std::deque<FrameLease> leases;
    {
      std::lock_guard<std::mutex> lock(parked_mu);
      leases.swap(parked);
    }
    leases.clear();  // FrameLease's destructor releases the slot
  }

  void ReleaseLease(FrameLease&& lease) {
    std::unique_lock<std::mutex> lock(mu, std::try_to_lock);
    if (lock.owns_lock()) {
      lease.Release();
      DrainParked();
      return;
    }
    std::lock_guard<std::mutex> parked_lock(parked_mu);
    parked.push_back(std::move(lease));
  }
};

const char* PixelFormatString(PixelFormat format) {
  switch (format) {
    case PixelFormat::kGray8:
      return "gray";
    case PixelFormat::kRGB8:
      return "rgb";
    case PixelFormat::kBGR8:
      return "bgr";
    case PixelFormat::kRGBA8:
      return "rgba";
  }
  return "unknown";
}

PixelFormat ParsePixelFormat(const std::string& text) {
  if (text == "rgb") return PixelFormat::kRGB8;
  if (text == "bgr") return PixelFormat::kBGR8;
  if (text == "gray") return PixelFormat::kGray8;
  if (text == "rgba") return PixelFormat::kRGBA8;
  throw py::value_error("pixel_format must be 'rgb', 'bgr', 'gray' or 'rgba', not '" + text + "'");
}

// zerodet.Frame: one leased frame.
class PyFrame : public BufferExporter {
 public:
  PyFrame(std::shared_ptr<ReaderState> state, FrameLease lease)
      : state_(std::move(state)), lease_(std::move(lease)), info_(lease_.info()) {}
  ~PyFrame() override {
    if (!fork_.owned_here()) {
      fork_.Dispose(lease_);
      fork_.Dispose(state_);
      return;
    }
    if (lease_.valid()) state_->ReleaseLease(std::move(lease_));
  }

  bool Layout(BufferLayout* layout) override {
    if (!lease_.valid()) {
      PyErr_SetString(PyExc_BufferError, "zerodet.Frame was released");
      return false;
    }
    layout->data = const_cast<uint8_t*>(lease_.payload().data());
    layout->readonly = true;
    if (info_.format == ring::FrameFormat::kEncoded) {
      layout->shape = {static_cast<Py_ssize_t>(info_.payload_bytes)};
      return true;
    }
    const auto channels = static_cast<Py_ssize_t>(ChannelCount(info_.pixel_format));
    layout->shape = {info_.height, info_.width};
    layout->strides = {static_cast<Py_ssize_t>(info_.stride), channels};
    if (channels > 1) {
      layout->shape.push_back(channels);
      layout->strides.push_back(1);
    }
    return true;
  }

  void Release() {
    fork_.CheckOwner("this Frame");
    if (!lease_.valid()) return;
    CheckNoExports("release the Frame");
    state_->ReleaseLease(std::move(lease_));
  }
  bool released() const { return !lease_.valid(); }
  bool alive() const override { return lease_.valid(); }
  const ring::FrameInfo& info() const { return info_; }

 private:
  ForkOwned fork_;
  std::shared_ptr<ReaderState> state_;
  FrameLease lease_;
  ring::FrameInfo info_;  // kept after release for the properties
};

class PyRingReader {
 public:
  PyRingReader(const std::string& name, const std::string& group, const std::string& mode,
               double spin_us) {
    ring::ReaderOptions options;
    options.ring_name = name;
    options.group = group;
    if (mode == "group") {
      options.mode = ring::ReaderMode::kWorkGroup;
    } else if (mode == "broadcast") {
      options.mode = ring::ReaderMode::kBroadcast;
    } else {
      throw py::value_error(
          "mode must be 'group' (each frame to one reader of the group) or "
          "'broadcast' (every frame to this reader), not '" +
          mode + "'");
    }
    if (!(spin_us >= 0 && spin_us <= 1e6)) throw py::value_error("spin_us must be in 0..1e6");
    options.spin = std::chrono::microseconds(static_cast<int64_t>(spin_us));
    Result<std::unique_ptr<RingReader>> reader = [&] {
      py::gil_scoped_release release;
      return RingReader::Attach(options);
    }();
    state_ = std::make_shared<ReaderState>();
    state_->reader = ValueOrThrow(std::move(reader));
    name_ = name;
  }
  ~PyRingReader() {
    if (!fork_.owned_here()) fork_.Dispose(state_);
    // Otherwise the last frame (or this) detaches the reader.
  }

  // A copy: a read running without the GIL keeps the reader while another thread closes.
  std::shared_ptr<ReaderState> state(const char* what) const {
    fork_.CheckOwner("this RingReader");
    if (state_ == nullptr) {
      ThrowError("ClosedError",
                 std::string("cannot ") + what + ": ring reader '" + name_ + "' is closed");
    }
    return state_;
  }

  // One read; `timeout` < 0 waits without limit (in slices, checking for Ctrl-C).
  Result<FrameLease> ReadLease(const std::shared_ptr<ReaderState>& s,
                               std::chrono::milliseconds timeout) {
    const bool forever = timeout.count() < 0;
    const Deadline deadline = forever ? Deadline::Never() : Deadline::After(timeout);
    for (;;) {
      Result<FrameLease> lease = [&] {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(s->mu);
        s->DrainParked();
        const auto wait =
            std::chrono::milliseconds(deadline.RemainingMs(static_cast<int>(kWaitSlice.count())));
        Result<FrameLease> got = s->reader->Read(wait);
        s->DrainParked();
        return got;
      }();
      if (lease.ok() || lease.status().code() != StatusCode::kDeadlineExceeded ||
          deadline.expired()) {
        return lease;
      }
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  }

  std::unique_ptr<PyFrame> Read(const py::object& timeout) {
    std::shared_ptr<ReaderState> s = state("read");
    Result<FrameLease> lease = ReadLease(s, TimeoutFromSeconds(timeout));
    return std::make_unique<PyFrame>(std::move(s), ValueOrThrow(std::move(lease)));
  }

  // Iteration: the next frame, waiting through writer restarts; nullptr once the writer closed
  // the ring and every frame is read.
  std::unique_ptr<PyFrame> Next() {
    std::shared_ptr<ReaderState> s = state("read");
    for (;;) {
      Result<FrameLease> lease = ReadLease(s, std::chrono::milliseconds(-1));
      if (lease.ok()) return std::make_unique<PyFrame>(s, std::move(lease).value());
      if (lease.status().code() != StatusCode::kUnavailable) ThrowStatus(lease.status());
      bool closed = false;
      {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(s->mu);
        closed = s->reader->WriterClosed();
      }
      if (closed) return nullptr;
      // The writer died; a restarted writer resumes the ring. Wait for it, interruptibly.
      {
        py::gil_scoped_release release;
        std::this_thread::sleep_for(kWaitSlice);
      }
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  }

  void Close() {
    fork_.CheckOwner("this RingReader");
    // Frames still out keep the C++ reader; it detaches when the last one is released.
    state_.reset();
  }
  bool closed() const { return state_ == nullptr; }
  const std::string& name() const { return name_; }

  py::dict Stats() {
    const std::shared_ptr<ReaderState> s = state("read stats");
    ring::ReaderStats r;
    ring::RingStats g;
    bool alive = false;
    bool closed = false;
    {
      // Not holding the GIL while a read in another thread finishes its wait.
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(s->mu);
      r = s->reader->Stats();
      g = s->reader->RingStatistics();
      alive = s->reader->WriterAlive();
      closed = s->reader->WriterClosed();
    }
    py::dict d;
    d["frames_read"] = r.frames_read;
    d["frames_missed"] = r.frames_missed;
    d["frames_published"] = g.frames_published;
    d["frames_dropped"] = g.frames_dropped;
    d["frames_overwritten"] = g.frames_overwritten;
    d["readers_attached"] = g.readers_attached;
    d["last_sequence"] = g.last_sequence;
    d["writer_alive"] = alive;
    d["writer_closed"] = closed;
    return d;
  }

 private:
  ForkOwned fork_;
  std::shared_ptr<ReaderState> state_;
  std::string name_;
};

class PyRingWriter {
 public:
  PyRingWriter(const std::string& name, int width, int height, const std::string& pixel_format,
               int slots, uint64_t slot_bytes, int max_readers, const std::string& policy)
      : format_(ParsePixelFormat(pixel_format)) {
    ring::RingOptions options;
    options.name = name;
    options.slot_count = slots;
    options.max_readers = max_readers;
    if (policy == "overwrite_oldest") {
      options.policy = ring::OverflowPolicy::kOverwriteOldest;
    } else if (policy == "drop_newest") {
      options.policy = ring::OverflowPolicy::kDropNewest;
    } else {
      throw py::value_error("policy must be 'overwrite_oldest' or 'drop_newest', not '" + policy +
                            "'");
    }
    if (width < 0 || height < 0) throw py::value_error("width and height must be >= 0");
    options.slot_bytes = slot_bytes != 0 ? slot_bytes : ring::SlotBytesFor(width, height, format_);
    if (options.slot_bytes == 0) {
      throw py::value_error("give width and height (raw frames) or slot_bytes (encoded frames)");
    }
    Result<std::unique_ptr<RingWriter>> writer = [&] {
      py::gil_scoped_release release;
      return RingWriter::Open(options);
    }();
    writer_ = ValueOrThrow(std::move(writer));
  }
  ~PyRingWriter() { fork_.Dispose(writer_); }

  // REQUIRES: mu_ held for every use of the returned writer that runs without the GIL (a
  // concurrent close() takes mu_ before destroying it).
  RingWriter& writer(const char* what) {
    fork_.CheckOwner("this RingWriter");
    if (writer_ == nullptr)
      ThrowError("ClosedError", std::string("cannot ") + what + ": the RingWriter is closed");
    return *writer_;
  }

  static int64_t Timestamp(const py::object& timestamp_ns) {
    if (timestamp_ns.is_none()) {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(
                 MonotonicClock::now().time_since_epoch())
          .count();
    }
    return py::cast<int64_t>(timestamp_ns);
  }

  py::object Write(const py::buffer& image, const py::object& timestamp_ns) {
    RingWriter& w = writer("write");
    const int64_t ts = Timestamp(timestamp_ns);
    const py::buffer_info buf = image.request();
    const int channels = ChannelCount(format_);
    const bool shape_ok =
        buf.itemsize == 1 && (buf.format == "B" || buf.format == "b") &&
        ((buf.ndim == 3 && buf.shape[2] == channels) || (buf.ndim == 2 && channels == 1));
    if (!shape_ok) {
      throw py::value_error(
          "image must be a uint8 array of shape (height, width" +
          std::string(channels == 1 ? ")" : ", " + std::to_string(channels) + ")") +
          " for this ring's pixel format " + PixelFormatString(format_));
    }
    // Pixels of a row must be packed; rows may be apart (a crop of a larger image).
    if (buf.strides[1] != channels || (buf.ndim == 3 && buf.strides[2] != 1) ||
        buf.strides[0] < static_cast<py::ssize_t>(buf.shape[1] * channels)) {
      throw py::value_error("image rows must hold packed pixels (numpy.ascontiguousarray())");
    }
    ImageView view;
    view.data = static_cast<const uint8_t*>(buf.ptr);
    view.height = static_cast<int>(buf.shape[0]);
    view.width = static_cast<int>(buf.shape[1]);
    view.stride = static_cast<size_t>(buf.strides[0]);
    view.format = format_;
    Result<uint64_t> sequence = [&]() -> Result<uint64_t> {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mu_);
      if (writer_ == nullptr) return FailedPreconditionError("the RingWriter was closed");
      return w.WriteImage(view, ts);
    }();
    return SequenceOrNone(std::move(sequence));
  }

  py::object WriteBytes(const py::buffer& data, int width, int height,
                        const py::object& timestamp_ns) {
    RingWriter& w = writer("write");
    const int64_t ts = Timestamp(timestamp_ns);
    const py::buffer_info buf = data.request();
    const auto size = static_cast<size_t>(buf.size * buf.itemsize);
    if (!PyBuffer_IsContiguous(buf.view(), 'C')) {
      throw py::value_error("data must be contiguous bytes");
    }
    if (size > w.slot_bytes()) {
      throw py::value_error(std::to_string(size) + " bytes do not fit a slot of " +
                            std::to_string(w.slot_bytes()));
    }
    Result<uint64_t> sequence = [&]() -> Result<uint64_t> {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mu_);
      if (writer_ == nullptr) return FailedPreconditionError("the RingWriter was closed");
      ZD_ASSIGN_OR_RETURN(std::span<uint8_t> slot, w.BeginFrame());
      std::memcpy(slot.data(), buf.ptr, size);
      ring::FrameInfo info;
      info.timestamp_ns = ts;
      info.payload_bytes = size;
      info.width = width;
      info.height = height;
      info.format = ring::FrameFormat::kEncoded;
      return w.Publish(info);
    }();
    return SequenceOrNone(std::move(sequence));
  }

  void Close() {
    fork_.CheckOwner("this RingWriter");
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    writer_.reset();
  }
  bool closed() const { return writer_ == nullptr; }

  py::dict Stats() {
    const ring::RingStats s = writer("read stats").Stats();
    py::dict d;
    d["frames_published"] = s.frames_published;
    d["frames_dropped"] = s.frames_dropped;
    d["frames_overwritten"] = s.frames_overwritten;
    d["readers_reclaimed"] = s.readers_reclaimed;
    d["slots_reclaimed"] = s.slots_reclaimed;
    d["last_sequence"] = s.last_sequence;
    d["writer_epoch"] = s.writer_epoch;
    d["readers_attached"] = s.readers_attached;
    return d;
  }

 private:
  // A dropped frame (no free slot under kDropNewest) is normal flow, not an error: None.
  static py::object SequenceOrNone(Result<uint64_t> sequence) {
    if (!sequence.ok() && sequence.status().code() == StatusCode::kResourceExhausted) {
      return py::none();
    }
    return py::int_(ValueOrThrow(std::move(sequence)));
  }

  ForkOwned fork_;
  std::mutex mu_;  // one write at a time (RingWriter is single-threaded), none during close
  std::unique_ptr<RingWriter> writer_;
  PixelFormat format_;
};

}  // namespace

void BindRing(py::module_& m) {
  py::class_<PyFrame> frame(m, "Frame", py::buffer_protocol(), R"doc(
A frame leased from a ring: read-only shared memory, no copy. ``numpy.asarray(frame)`` /
``frame.array()`` is height x width x channels uint8 (height x width for gray; rows may be
padded: the array is strided) or, for encoded frames, 1-D uint8 of the payload. The writer does
not reuse the slot while the Frame or an array of it lives; release() (or the end of a with
block) gives it back early. Keep frames short-lived: a held frame is a slot the writer cannot use.
)doc");
  frame
      .def(
          "array",
          [](py::object self) { return ExportArray(self, py::cast<PyFrame&>(self), "Frame"); },
          "A read-only numpy array over the frame (no copy).")
      .def_property_readonly(
          "sequence", [](const PyFrame& f) { return f.info().sequence; },
          "1, 2, 3... per ring, never reused.")
      .def_property_readonly(
          "timestamp_ns", [](const PyFrame& f) { return f.info().timestamp_ns; },
          "Capture time given by the writer.")
      .def_property_readonly(
          "publish_time_ns", [](const PyFrame& f) { return f.info().publish_time_ns; },
          "CLOCK_MONOTONIC at publish (comparable across processes; "
          "time.monotonic_ns()).")
      .def_property_readonly("width", [](const PyFrame& f) { return f.info().width; })
      .def_property_readonly("height", [](const PyFrame& f) { return f.info().height; })
      .def_property_readonly(
          "pixel_format", [](const PyFrame& f) { return PixelFormatString(f.info().pixel_format); },
          "'rgb', 'bgr', 'gray' or 'rgba' (raw frames).")
      .def_property_readonly(
          "encoded",
          [](const PyFrame& f) { return f.info().format == ring::FrameFormat::kEncoded; },
          "True for encoded payloads (JPEG, JSON lines of a results ring).")
      .def_property_readonly("nbytes", [](const PyFrame& f) { return f.info().payload_bytes; })
      .def(
          "bytes",
          [](PyFrame& f) {
            const py::array a = AsArray(py::cast(&f, py::return_value_policy::reference));
            return py::bytes(static_cast<const char*>(a.data()), static_cast<size_t>(a.nbytes()));
          },
          "A copy of the payload as bytes.")
      .def_property_readonly("released", &PyFrame::released)
      .def("release", &PyFrame::Release,
           "Gives the slot back; raises BufferError while arrays of the frame are alive.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyFrame& f, const py::args&) {
             f.Release();
             return false;
           })
      .def("__repr__", [](const PyFrame& f) {
        return "<zerodet.Frame " + std::to_string(f.info().sequence) + " " +
               std::to_string(f.info().width) + "x" + std::to_string(f.info().height) + ">";
      });
  EnableExports(frame);

  py::class_<PyRingReader>(m, "RingReader", R"doc(
A reader of a frame ring (``/dev/shm/zerodet-ring-NAME``), e.g. a pipeline's results ring.

    with zerodet.RingReader("cam0", group="detectors") as reader:
        for frame in reader:            # ends when the writer closes the ring
            img = frame.array()         # H x W x 3 uint8, no copy
            ...                         # the slot is given back when `frame` and `img` go

mode='group': each frame goes to exactly one reader of `group` (load balancing; every group sees
every frame). mode='broadcast': this reader sees every frame, or the newest once it falls
behind. Waits release the GIL and notice Ctrl-C. Frames may be dropped on any thread. Not for
use by several threads at once (one reader per thread). Raises NotFoundError for a missing ring.
)doc")
      .def(py::init<const std::string&, const std::string&, const std::string&, double>(),
           py::arg("name"), py::kw_only(), py::arg("group") = "default", py::arg("mode") = "group",
           py::arg("spin_us") = 0.0)
      .def("read", &PyRingReader::Read, py::arg("timeout") = py::none(), R"doc(
The next frame, waiting up to `timeout` seconds (None: without limit). Raises
DeadlineExceededError (TimeoutError) when none came, UnavailableError (ConnectionError) when the
writer closed the ring or died and no frame is left.)doc")
      .def("__iter__", [](py::object self) { return self; })
      .def(
          "__next__",
          [](PyRingReader& r) {
            std::unique_ptr<PyFrame> next = r.Next();
            if (next == nullptr) throw py::stop_iteration();
            return next;
          },
          "The next frame, waiting through writer restarts; stops when the ring is closed.")
      .def("stats", &PyRingReader::Stats, "Counters of this reader and of the ring.")
      .def("close", &PyRingReader::Close,
           "Detaches (once frames still out are released). Idempotent.")
      .def_property_readonly("closed", &PyRingReader::closed)
      .def_property_readonly("name", &PyRingReader::name)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyRingReader& r, const py::args&) {
        r.Close();
        return false;
      });

  py::class_<PyRingWriter>(m, "RingWriter", R"doc(
The single writer of a frame ring, for Python producers.

    with zerodet.RingWriter("cam0", width=1280, height=720) as writer:
        writer.write(rgb_frame)         # one copy into shared memory; returns the sequence

Creates the ring (or resumes one whose writer died). pixel_format: 'rgb', 'bgr', 'gray', 'rgba'.
slot_bytes: slot size for encoded payloads (write_bytes) instead of width x height.
policy: 'overwrite_oldest' (live video) or 'drop_newest'; a dropped frame returns None.
close() (or the end of a with block) ends the ring for its readers. One thread at a time.
Raises AlreadyExistsError when a live writer has the ring.
)doc")
      .def(py::init<const std::string&, int, int, const std::string&, int, uint64_t, int,
                    const std::string&>(),
           py::arg("name"), py::kw_only(), py::arg("width") = 0, py::arg("height") = 0,
           py::arg("pixel_format") = "rgb", py::arg("slots") = 4, py::arg("slot_bytes") = 0,
           py::arg("max_readers") = ring::kMaxReaders, py::arg("policy") = "overwrite_oldest")
      .def("write", &PyRingWriter::Write, py::arg("image"), py::kw_only(),
           py::arg("timestamp_ns") = py::none(), R"doc(
Publishes a uint8 image (H x W x channels; H x W for gray) of at most the ring's size.
timestamp_ns defaults to now (CLOCK_MONOTONIC). Returns the sequence, or None when dropped.)doc")
      .def("write_bytes", &PyRingWriter::WriteBytes, py::arg("data"), py::kw_only(),
           py::arg("width") = 0, py::arg("height") = 0, py::arg("timestamp_ns") = py::none(),
           "Publishes an encoded payload (JPEG bytes, a JSON line). Returns the sequence or None.")
      .def("stats", &PyRingWriter::Stats, "The ring's counters.")
      .def("close", &PyRingWriter::Close, "Closes the ring for its readers. Idempotent.")
      .def_property_readonly("closed", &PyRingWriter::closed)
      .def_property_readonly("slot_bytes",
                             [](PyRingWriter& w) { return w.writer("read").slot_bytes(); })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyRingWriter& w, const py::args&) {
        w.Close();
        return false;
      });

  m.def("list_rings", &ring::ListRings, "Names of the frame rings in /dev/shm.");
}

}  // namespace zerodet::python
