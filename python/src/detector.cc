// zerodet.Detector: infer/detector.h from Python, a model file or a model of a repository
// (models/model_manager.h). Detections come out in the one detection format
// (core/detection_json.h), so Python and `zerodet detect` agree value for value.
//
// A C++ Detector is not thread-safe: each Python Detector has a mutex, taken after the GIL is
// released, so threads may share one Detector (calls run one at a time) while ONNX Runtime runs
// without the GIL.
#include "zerodet/infer/detector.h"

#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common.h"
#include "dataset.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::python {
namespace {

// An ordered_json of detections as Python lists, dicts, floats and ints.
py::object JsonToPython(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::object: {
      py::dict d;
      for (const auto& [key, value] : json.items()) d[py::str(key)] = JsonToPython(value);
      return d;
    }
    case nlohmann::ordered_json::value_t::array: {
      py::list l;
      for (const auto& value : json) l.append(JsonToPython(value));
      return l;
    }
    case nlohmann::ordered_json::value_t::string:
      return py::str(json.get<std::string>());
    case nlohmann::ordered_json::value_t::number_integer:
      return py::int_(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return py::int_(json.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return py::float_(json.get<double>());
    case nlohmann::ordered_json::value_t::boolean:
      return py::bool_(json.get<bool>());
    default:
      return py::none();
  }
}

PixelFormat ImagePixelFormat(const std::string& text, int channels) {
  if (channels == 1) return PixelFormat::kGray8;
  if (channels == 4) return PixelFormat::kRGBA8;
  if (channels == 3 && text == "rgb") return PixelFormat::kRGB8;
  if (channels == 3 && text == "bgr") return PixelFormat::kBGR8;
  throw py::value_error("pixel_format must be 'rgb' or 'bgr' (OpenCV's cv2.imread order), not '" +
                        text + "'");
}

class PyDetector {
 public:
  PyDetector(const py::object& model, const py::object& repo, double conf, double iou, int max_det,
             bool agnostic, int threads, const std::string& provider, const std::string& format) {
    if (!(conf >= 0 && conf <= 1)) throw py::value_error("conf must be in [0, 1]");
    if (!(iou >= 0 && iou <= 1)) throw py::value_error("iou must be in [0, 1]");
    if (max_det < 1) throw py::value_error("max_det must be >= 1");
    if (threads < 0 || threads > kMaxBackendThreads) {
      throw py::value_error("threads must be in 0.." + std::to_string(kMaxBackendThreads));
    }
    if (model.is_none()) throw py::type_error("give model=PATH, or repo=REPO and model=NAME");
    // ONNX Runtime's environment is process-wide and decides once whether it has shared thread
    // pools, which repository models (the model manager) need. Create it with them before the
    // first detector of any kind, so file and repository detectors mix in one process in any
    // order; file detectors still run on pools of their own (`threads`). Should this fail, a
    // repository model reports the reason itself.
    (void)ConfigureSharedThreadPool(SharedThreadPoolOptions{});
    const std::string model_text = py::str(py::module_::import("os").attr("fspath")(model));
    DetectParams params;
    params.conf_threshold = static_cast<float>(conf);
    params.iou_threshold = static_cast<float>(iou);
    params.max_detections = max_det;
    params.class_agnostic = agnostic;
    if (repo.is_none()) {
      DetectorOptions options;
      options.format = ValueOrThrow(ParseYoloFormat(format));
      options.backend.provider = ValueOrThrow(ParseExecutionProvider(provider));
      options.backend.intra_op_threads = threads;
      options.params = params;
      options.max_batch = 1;
      Result<std::unique_ptr<Detector>> created = [&] {
        py::gil_scoped_release release;
        return Detector::Create(model_text, options);
      }();
      owned_ = ValueOrThrow(std::move(created), NotFoundKind::kFile);
      detector_ = owned_.get();
    } else {
      // The repository's config decides layout, provider and threads, as `zerodet detect
      // --repo`; only the thresholds come from here.
      if (format != "auto" || provider != "cpu" || threads != 0) {
        throw py::value_error(
            "format, provider and threads configure a model file; with repo "
            "the model's config sets them (config.yaml or config.pbtxt)");
      }
      const std::string repo_text = py::str(py::module_::import("os").attr("fspath")(repo));
      Result<OpenedModel> opened = [&] {
        py::gil_scoped_release release;
        return OpenModelFromRepository(repo_text, model_text);
      }();
      opened_ = ValueOrThrow(std::move(opened));
      detector_ = &opened_.handle.detector();
      detector_->set_params(params);
    }
    model_name_ = model_text;
  }

  ~PyDetector() {
    if (!fork_.owned_here()) {
      // ONNX Runtime's threads do not exist in a forked child: tearing a session down there
      // could wait for them forever.
      fork_.Dispose(opened_);
      fork_.Dispose(owned_);
      return;
    }
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    opened_.handle.Release();
    opened_.manager.reset();
    owned_.reset();
  }

  const Detector& detector() const {
    fork_.CheckOwner("this Detector");
    return *detector_;
  }

  py::list Detect(const py::object& image, const std::string& pixel_format) {
    fork_.CheckOwner("this Detector");
    Result<DetectionResult> result = InternalError("no input");
    NotFoundKind not_found = NotFoundKind::kKey;
    if (py::isinstance<PySample>(image)) {
      result = DetectSample(py::cast<PySample&>(image));
    } else if (py::isinstance<py::bytes>(image) || py::isinstance<py::bytearray>(image)) {
      const py::buffer_info buf = py::cast<py::buffer>(image).request();
      const std::span<const uint8_t> bytes(static_cast<const uint8_t*>(buf.ptr),
                                           static_cast<size_t>(buf.size));
      result = Run([&] { return detector_->DetectEncoded(bytes, "<bytes>"); });
    } else if (py::isinstance<py::str>(image) || py::hasattr(image, "__fspath__")) {
      const std::string path = py::str(py::module_::import("os").attr("fspath")(image));
      not_found = NotFoundKind::kFile;
      result = Run([&] { return detector_->DetectFile(path); });
    } else if (PyObject_CheckBuffer(image.ptr()) != 0) {
      result = DetectPixels(py::cast<py::buffer>(image), pixel_format);
    } else {
      throw py::type_error(
          "image must be a numpy uint8 array (H x W x 3, H x W x 4 or H x W), encoded bytes, a "
          "path, or a zerodet.Sample of a letterboxed dataset; not " +
          py::str(py::type::of(image).attr("__name__")).cast<std::string>());
    }
    const DetectionResult r = ValueOrThrow(std::move(result), not_found);
    return py::cast<py::list>(
        JsonToPython(DetectionsToJson(r.detections, detector_->spec().class_names)));
  }

  py::dict Info() const {
    const ModelSpec& spec = detector().spec();
    py::dict d;
    d["model"] = model_name_;
    d["format"] = std::string(YoloFormatName(spec.format));
    d["input_size"] = py::make_tuple(spec.input_width, spec.input_height);
    d["letterbox"] = spec.letterbox == LetterboxStyle::kYolox ? "yolox" : "ultralytics";
    d["class_names"] = spec.class_names;
    return d;
  }

 private:
  template <typename F>
  Result<DetectionResult> Run(F&& run) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    return run();
  }

  Result<DetectionResult> DetectPixels(const py::buffer& image, const std::string& pixel_format) {
    const py::buffer_info buf = image.request();
    const int channels = buf.ndim == 2 ? 1 : (buf.ndim == 3 ? static_cast<int>(buf.shape[2]) : 0);
    if (buf.itemsize != 1 || (buf.format != "B" && buf.format != "b") ||
        (channels != 1 && channels != 3 && channels != 4)) {
      throw py::value_error(
          "image array must be uint8 of shape (H, W, 3), (H, W, 4) or (H, W); "
          "got format '" +
          buf.format + "' with " + std::to_string(buf.ndim) + " dimensions");
    }
    if (buf.strides[1] != channels || (buf.ndim == 3 && buf.strides[2] != 1) ||
        buf.strides[0] < buf.shape[1] * channels) {
      throw py::value_error("image rows must hold packed pixels (numpy.ascontiguousarray())");
    }
    ImageView view;
    view.data = static_cast<const uint8_t*>(buf.ptr);
    view.height = static_cast<int>(buf.shape[0]);
    view.width = static_cast<int>(buf.shape[1]);
    view.stride = static_cast<size_t>(buf.strides[0]);
    view.format = ImagePixelFormat(pixel_format, channels);
    if (view.empty()) throw py::value_error("image is empty");
    return Run([&] { return detector_->Detect(view); });
  }

  Result<DetectionResult> DetectSample(PySample& sample) {
    const dataset::SampleInfo& info = sample.info();
    const ModelSpec& spec = detector_->spec();
    if (info.dtype != DType::kFloat32 || info.shape.size() != 3 || info.shape[0] != 3 ||
        info.shape[1] != spec.input_height || info.shape[2] != spec.input_width) {
      throw py::value_error(
          "sample '" + info.name + "' is not this model's input (" +
          std::to_string(spec.input_width) + "x" + std::to_string(spec.input_height) +
          " letterboxed): preload the dataset with --as letterbox:" +
          std::to_string(spec.input_width) + ", or pass the image path or array instead");
    }
    BufferLayout layout;
    if (!sample.Layout(&layout)) throw py::error_already_set();
    const auto* chw = static_cast<const float*>(layout.data);
    // The sample object keeps its store reference while this call runs: the caller holds it.
    return Run([&] {
      return detector_->DetectPreprocessed(chw, info.geometry, info.source_width,
                                           info.source_height);
    });
  }

  ForkOwned fork_;
  std::mutex mu_;  // one call into the C++ detector at a time
  std::unique_ptr<Detector> owned_;
  OpenedModel opened_;
  Detector* detector_ = nullptr;
  std::string model_name_;
};

}  // namespace

void BindDetector(py::module_& m) {
  py::class_<PyDetector>(m, "Detector", R"doc(
A YOLO detector (YOLOv5/v8/v10/v11, YOLOX ONNX exports) on ONNX Runtime.

    det = zerodet.Detector("yolov8n.onnx")                     # a model file
    det = zerodet.Detector("yolov8n:1", repo="models/")        # a model of a repository
    det.detect("dog.jpg")       # a path, encoded bytes, a uint8 array or a dataset Sample
    # [{'class_id': 16, 'class': 'dog', 'score': 0.9559, 'box': [131.13, 219.11, 308.27, 539.73]}, ...]

Detections are exactly what ``zerodet detect`` prints: box [x1, y1, x2, y2] in the source image's
pixels (2 decimals), score with 4 decimals, the model's class name. Defaults (conf 0.25, iou
0.45, max_det 300) are zerodet detect's. With repo, the model's config chooses layout, provider
and threads, as ``zerodet detect --repo``. The GIL is released while the model runs; calls on
one Detector from several threads run one at a time (use one Detector per thread to run in
parallel). Raises FileNotFoundError_ (a FileNotFoundError) for a missing model or image,
InvalidArgumentError / CorruptDataError (ValueError) for bad models and images.
)doc")
      .def(py::init<const py::object&, const py::object&, double, double, int, bool, int,
                    const std::string&, const std::string&>(),
           py::arg("model"), py::kw_only(), py::arg("repo") = py::none(), py::arg("conf") = 0.25,
           py::arg("iou") = 0.45, py::arg("max_det") = 300, py::arg("agnostic") = false,
           py::arg("threads") = 0, py::arg("provider") = "cpu", py::arg("format") = "auto")
      .def("detect", &PyDetector::Detect, py::arg("image"), py::kw_only(),
           py::arg("pixel_format") = "rgb", R"doc(
Detects objects in `image`: a path (str or os.PathLike), encoded bytes (JPEG/PNG/BMP), a uint8
numpy array (H x W x 3 in `pixel_format` 'rgb' or 'bgr' (cv2.imread), H x W x 4 RGBA, H x W
gray), or a zerodet.Sample of a dataset preloaded as this model's letterboxed input (run on the
store's memory, no copy). Returns a list of {'class_id', 'class', 'score', 'box'} dicts, best
first.)doc")
      .def_property_readonly("info", &PyDetector::Info,
                             "The model: format, input_size, letterbox style, class_names.")
      .def_property_readonly("class_names",
                             [](const PyDetector& d) { return d.detector().spec().class_names; });
}

}  // namespace zerodet::python
