// zerodet._DatasetReader and zerodet.Sample: the C++ DatasetReader (dataset/dataset.h) for the
// pure-Python zerodet.Dataset (python/zerodet/dataset.py), which adds pickling, per-process
// reconnection and annotations.
#include "dataset.h"

#include <nlohmann/json.hpp>

#include "store.h"

namespace zerodet::python {
namespace {

using dataset::DatasetReader;
using dataset::Sample;
using dataset::SampleInfo;
using dataset::SampleLayout;

// zerodet._DatasetReader: DatasetReader over a zerodet.Store's client.
class PyDatasetReader {
 public:
  PyDatasetReader(const PyStore& store, const std::string& name) : name_(name) {
    const std::shared_ptr<store::StoreClient> client = store.client();
    Result<std::unique_ptr<DatasetReader>> reader = [&] {
      py::gil_scoped_release release;
      return DatasetReader::Open(client, name);
    }();
    reader_ = ValueOrThrow(std::move(reader));
    // The manifest names the preload's source (a COCO file or a directory), where the Python
    // layer finds annotations. Read here rather than widening the C++ reader's API.
    Result<store::ObjectView> manifest = client->Get(dataset::ManifestId(name));
    if (manifest.ok()) {
      const auto* text = reinterpret_cast<const char*>(manifest->data().data());
      const auto json = nlohmann::json::parse(text, text + manifest->data().size(), nullptr,
                                              /*allow_exceptions=*/false);
      if (json.is_object() && json.contains("source") && json["source"].is_string()) {
        source_ = json["source"].get<std::string>();
      }
    }
  }
  ~PyDatasetReader() { fork_.Dispose(reader_); }

  const DatasetReader& reader() const {
    fork_.CheckOwner("this dataset reader");
    return *reader_;
  }

  std::unique_ptr<PySample> Get(int64_t index) const {
    const DatasetReader& r = reader();
    const auto size = static_cast<int64_t>(r.size());
    if (index < -size || index >= size) {
      throw py::index_error("dataset '" + name_ + "' has " + std::to_string(size) +
                            " samples, asked for sample " + std::to_string(index));
    }
    const auto i = static_cast<size_t>(index < 0 ? index + size : index);
    // A store hit is a fraction of a microsecond: only a miss (decoding from the source file)
    // is worth dropping the GIL for, and which one it is shows only afterwards. Try the
    // fast path first with the GIL; on a miss decode without it.
    if (client_hit(r, i)) {
      return std::make_unique<PySample>(ValueOrThrow(r.Get(i), NotFoundKind::kFile), i);
    }
    Result<Sample> sample = [&] {
      py::gil_scoped_release release;
      return r.Get(i);
    }();
    return std::make_unique<PySample>(ValueOrThrow(std::move(sample), NotFoundKind::kFile), i);
  }

  int64_t Find(const std::string& name) const {
    const size_t i = reader().Find(name);
    return i == reader().size() ? -1 : static_cast<int64_t>(i);
  }

  const std::string& source() const { return source_; }
  const std::string& name() const { return name_; }
  void set_client(std::shared_ptr<store::StoreClient> client) { client_ = std::move(client); }

 private:
  bool client_hit(const DatasetReader& r, size_t i) const {
    return client_ != nullptr && client_->Contains(r.info(i).id);
  }

  ForkOwned fork_;
  std::unique_ptr<DatasetReader> reader_;
  std::shared_ptr<store::StoreClient> client_;  // for the hit check only
  std::string name_;
  std::string source_;
};

py::dict InfoDict(const SampleInfo& info, size_t index) {
  py::dict d;
  d["index"] = index;
  d["name"] = info.name;
  d["path"] = info.path.string();
  d["source_size"] = py::make_tuple(info.source_width, info.source_height);
  d["shape"] = py::cast(info.shape);
  d["scale"] = info.geometry.scale;
  d["pad"] = py::make_tuple(info.geometry.pad_x, info.geometry.pad_y);
  d["resized"] = py::make_tuple(info.geometry.resized_width, info.geometry.resized_height);
  return d;
}

}  // namespace

void BindDataset(py::module_& m) {
  py::class_<PySample> sample(m, "Sample", py::buffer_protocol(), R"doc(
One dataset sample, read-only: a view into the store (no copy), or the decoded copy of a sample
the store had evicted. ``numpy.asarray(sample)`` / ``sample.array()`` is a float32 3 x S x S
array (letterbox layout, exactly the model input) or a uint8 H x W x 3 RGB image (rgb layout).
The store reference is held while the Sample or any array of it lives. One thread at a time.
)doc");
  sample
      .def(
          "array",
          [](py::object self) { return ExportArray(self, py::cast<PySample&>(self), "Sample"); },
          "A read-only numpy array over the sample (no copy).")
      .def_property_readonly("index", &PySample::index)
      .def_property_readonly(
          "name", [](const PySample& s) { return s.info().name; },
          "The sample's name (COCO file_name or path relative to the folder).")
      .def_property_readonly(
          "path", [](const PySample& s) { return s.info().path.string(); },
          "The source image file.")
      .def_property_readonly(
          "source_size",
          [](const PySample& s) {
            return py::make_tuple(s.info().source_width, s.info().source_height);
          },
          "(width, height) of the original image.")
      .def_property_readonly(
          "scale", [](const PySample& s) { return s.info().geometry.scale; },
          "Letterbox: model pixels per source pixel (1 for rgb).")
      .def_property_readonly(
          "pad",
          [](const PySample& s) {
            return py::make_tuple(s.info().geometry.pad_x, s.info().geometry.pad_y);
          },
          "Letterbox: (left, top) padding in model pixels.")
      .def_property_readonly(
          "resized",
          [](const PySample& s) {
            return py::make_tuple(s.info().geometry.resized_width,
                                  s.info().geometry.resized_height);
          },
          "Letterbox: (width, height) of the scaled image inside the input.")
      .def_property_readonly("from_store", &PySample::from_store,
                             "False when the store had evicted it and this is a decoded copy.")
      .def_property_readonly("released", &PySample::released)
      .def("release", &PySample::Release,
           "Drops the store reference now; raises BufferError while arrays of it are alive.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PySample& s, const py::args&) {
             s.Release();
             return false;
           })
      .def("__repr__", [](const PySample& s) {
        return "<zerodet.Sample " + std::to_string(s.index()) + " '" + s.info().name + "'>";
      });
  EnableExports(sample);

  py::class_<PyDatasetReader>(m, "_DatasetReader",
                              "The C++ DatasetReader; use zerodet.Dataset instead.")
      .def(py::init([](const PyStore& store, const std::string& name) {
             auto reader = std::make_unique<PyDatasetReader>(store, name);
             reader->set_client(store.client());
             return reader;
           }),
           py::arg("store"), py::arg("name"))
      .def("__len__", [](const PyDatasetReader& r) { return r.reader().size(); })
      .def("get", &PyDatasetReader::Get, py::arg("index"))
      .def("find", &PyDatasetReader::Find, py::arg("name"))
      .def(
          "info",
          [](const PyDatasetReader& r, size_t i) {
            if (i >= r.reader().size()) throw py::index_error("sample index out of range");
            return InfoDict(r.reader().info(i), i);
          },
          py::arg("index"))
      .def_property_readonly("layout",
                             [](const PyDatasetReader& r) {
                               return r.reader().layout() == SampleLayout::kRgb8 ? "rgb"
                                                                                 : "letterbox";
                             })
      .def_property_readonly("letterbox_size",
                             [](const PyDatasetReader& r) { return r.reader().letterbox_size(); })
      .def_property_readonly(
          "letterbox_style",
          [](const PyDatasetReader& r) {
            return r.reader().letterbox_style() == LetterboxStyle::kYolox ? "yolox" : "ultralytics";
          })
      .def_property_readonly("source", &PyDatasetReader::source)
      .def_property_readonly("name", &PyDatasetReader::name);
}

}  // namespace zerodet::python
