#include "zerodet/server/inference_service.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "zerodet/codec/annotate.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/stopwatch.h"
#include "zerodet/core/version.h"

namespace zerodet::server {
namespace {

std::string VersionText(std::string_view name, std::optional<int64_t> version) {
  return version ? std::string(name) + ":" + std::to_string(*version) : std::string(name);
}

// Restores a model instance's detection parameters when a request that changed them ends (the
// instance serves other requests next).
class ParamsGuard {
 public:
  explicit ParamsGuard(Detector& detector)
      : detector_(detector), saved_(detector.options().params) {}
  ~ParamsGuard() { detector_.set_params(saved_); }
  ParamsGuard(const ParamsGuard&) = delete;
  ParamsGuard& operator=(const ParamsGuard&) = delete;
  const DetectParams& saved() const { return saved_; }

 private:
  Detector& detector_;
  DetectParams saved_;
};

// Checks one request input (its bytes are `data`) against the model's tensor and returns it as
// a view for Run.
Result<ConstTensorView> BindInput(const InferInput& input, std::span<const uint8_t> data,
                                  const TensorInfo& model_input) {
  auto dtype = ParseKServeDatatype(input.datatype);
  if (!dtype.ok()) return dtype.status().WithContext("input '" + input.name + "'");
  if (*dtype != model_input.dtype) {
    return InvalidArgumentError("input '" + input.name + "' has datatype " + input.datatype +
                                "; the model takes " +
                                std::string(KServeDatatype(model_input.dtype)));
  }
  bool shape_fits = input.shape.size() == model_input.shape.size();
  for (size_t i = 0; shape_fits && i < input.shape.size(); ++i) {
    if (input.shape[i] < 0 || (model_input.shape[i] >= 0 && input.shape[i] != model_input.shape[i]))
      shape_fits = false;
  }
  if (!shape_fits) {
    return InvalidArgumentError("input '" + input.name + "' has shape " +
                                ShapeToString(input.shape) + "; the model takes " +
                                ShapeToString(model_input.shape) + " (-1: any size)");
  }
  const std::optional<uint64_t> elements = CheckedElementCount(input.shape);
  const uint64_t element_bytes = DTypeSize(*dtype);
  if (!elements || *elements > UINT64_MAX / element_bytes) {
    return InvalidArgumentError("input '" + input.name + "' has shape " +
                                ShapeToString(input.shape) + ", too many elements");
  }
  if (*elements * element_bytes != data.size()) {
    return InvalidArgumentError("input '" + input.name + "' has " + std::to_string(data.size()) +
                                " bytes; shape " + ShapeToString(input.shape) + " of " +
                                input.datatype + " needs " +
                                std::to_string(*elements * element_bytes));
  }
  return ConstTensorView(data.data(), *dtype, input.shape);
}

}  // namespace

InferenceService::InferenceService(ModelManager& manager, Options options)
    : manager_(manager), options_(options), metrics_(std::make_unique<ServerMetrics>(manager)) {}

bool InferenceService::KnownModel(std::string_view name) const {
  return manager_.Index().Find(name) != nullptr;
}

Result<ModelHandle> InferenceService::AcquireQueued(const std::string& name,
                                                    std::optional<int64_t> version,
                                                    Deadline deadline,
                                                    ServerMetrics::InFlight& inflight) {
  const bool bounded = options_.max_queue > 0;
  if (bounded) {
    const std::lock_guard lock(queues_mutex_);
    uint32_t& waiting = waiting_[name];
    if (waiting >= options_.max_queue) {
      return ResourceExhaustedError("model " + name.substr(0, 100) + " has " +
                                    std::to_string(waiting) +
                                    " requests waiting, the most its queue holds; retry later");
    }
    waiting += 1;
  }
  AcquireOptions acquire;
  acquire.version = version;
  acquire.deadline = deadline;
  const bool queue_deadline =
      options_.queue_timeout.count() > 0 && Deadline::After(options_.queue_timeout) < deadline;
  if (queue_deadline) acquire.deadline = Deadline::After(options_.queue_timeout);
  inflight.QueueBegin();
  Result<ModelHandle> handle = manager_.Acquire(name, acquire);
  inflight.QueueEnd();
  if (bounded) {
    const std::lock_guard lock(queues_mutex_);
    const auto it = waiting_.find(name);
    if (it != waiting_.end() && --it->second == 0 && waiting_.size() > 1024) waiting_.erase(it);
  }
  if (!handle.ok() && queue_deadline && handle.status().code() == StatusCode::kDeadlineExceeded) {
    return UnavailableError("model " + name.substr(0, 100) + " was not free within the queue " +
                            "timeout of " + std::to_string(options_.queue_timeout.count()) +
                            " ms; retry later");
  }
  return handle;
}

std::string InferenceService::version() const {
  return std::string(kVersion);
}

std::vector<std::string> InferenceService::extensions() const {
  std::vector<std::string> extensions = {"model_repository", "binary_tensor_data",
                                         "zerodet_detect"};
  if (options_.allow_client_shm) extensions.push_back("system_shared_memory");
  return extensions;
}

namespace {
Status SharedMemoryAllowed(bool allowed) {
  if (allowed) return Status::Ok();
  return PermissionDeniedError(
      "system shared memory is off on this server (start zerodet serve with --allow-client-shm)");
}
}  // namespace

Status InferenceService::RegisterSharedMemory(const std::string& name, const std::string& key,
                                              uint64_t offset, uint64_t byte_size) {
  ZD_RETURN_IF_ERROR(SharedMemoryAllowed(options_.allow_client_shm));
  return shared_memory_.Register(name, key, offset, byte_size);
}

Status InferenceService::UnregisterSharedMemory(const std::optional<std::string>& name) {
  ZD_RETURN_IF_ERROR(SharedMemoryAllowed(options_.allow_client_shm));
  if (!name) {
    shared_memory_.UnregisterAll();
    return Status::Ok();
  }
  return shared_memory_.Unregister(*name);
}

Result<std::vector<SharedMemoryRegionStatus>> InferenceService::SharedMemoryStatus(
    const std::optional<std::string>& name) const {
  ZD_RETURN_IF_ERROR(SharedMemoryAllowed(options_.allow_client_shm));
  return shared_memory_.Regions(name);
}

Result<bool> InferenceService::ModelReady(std::string_view name,
                                          std::optional<int64_t> version) const {
  const RepositoryIndex index = manager_.Index();
  const ModelEntry* entry = index.Find(name);
  if (entry == nullptr) {
    return NotFoundError("model '" + std::string(name.substr(0, 100)) +
                         "' is not in the repository");
  }
  if (version &&
      std::find(entry->served.begin(), entry->served.end(), *version) == entry->served.end()) {
    return NotFoundError("model " + VersionText(name, version) + " is not served");
  }
  for (const ModelStats& stats : manager_.Stats().models) {
    if (stats.name != name) continue;
    for (const VersionStats& v : stats.versions) {
      if ((!version || v.version == *version) && v.state == ModelState::kReady) return true;
    }
  }
  return false;
}

Result<ModelMetadata> InferenceService::Metadata(std::string_view name,
                                                 std::optional<int64_t> version,
                                                 Deadline deadline) {
  AcquireOptions acquire;
  acquire.version = version;
  acquire.deadline = deadline;
  ZD_ASSIGN_OR_RETURN(ModelHandle handle, manager_.Acquire(name, acquire));
  ModelMetadata metadata;
  metadata.name = handle.name();
  const RepositoryIndex index = manager_.Index();
  if (const ModelEntry* entry = index.Find(name)) {
    for (int64_t v : entry->served) metadata.versions.push_back(std::to_string(v));
  }
  const ModelInfo& info = handle->backend().info();
  for (const TensorInfo& t : info.inputs) {
    metadata.inputs.push_back({t.name, std::string(KServeDatatype(t.dtype)), t.shape});
  }
  for (const TensorInfo& t : info.outputs) {
    metadata.outputs.push_back({t.name, std::string(KServeDatatype(t.dtype)), t.shape});
  }
  return metadata;
}

Status InferenceService::Infer(const InferRequest& request, const InferSink& sink) {
  ServerMetrics::InFlight inflight(*metrics_, "infer");
  RequestStageSeconds stages;
  const Stopwatch total;
  const Status status = InferStages(request, sink, inflight, stages);
  const int64_t batch = !request.inputs.empty() && !request.inputs.front().shape.empty()
                            ? request.inputs.front().shape.front()
                            : 0;
  metrics_->RecordRequest("infer", request.model_name,
                          status.ok() || KnownModel(request.model_name), status, stages,
                          total.ElapsedMs() / 1000, batch);
  return status;
}

Status InferenceService::InferStages(const InferRequest& request, const InferSink& sink,
                                     ServerMetrics::InFlight& inflight,
                                     RequestStageSeconds& stages) {
  Stopwatch stage;
  auto acquired =
      AcquireQueued(request.model_name, request.model_version, request.deadline, inflight);
  stages.queue = stage.LapMs() / 1000;
  if (!acquired.ok()) return acquired.status();
  ModelHandle handle = std::move(*acquired);
  Backend& backend = handle->backend();
  const ModelInfo& info = backend.info();

  std::set<std::string_view> names;
  for (const InferInput& input : request.inputs) {
    if (!names.insert(input.name).second) {
      return InvalidArgumentError("input '" + input.name + "' is given twice");
    }
    const bool known = std::any_of(info.inputs.begin(), info.inputs.end(),
                                   [&](const TensorInfo& t) { return t.name == input.name; });
    if (!known) {
      std::string expected;
      for (const TensorInfo& t : info.inputs) expected += (expected.empty() ? "" : ", ") + t.name;
      return InvalidArgumentError("model " + request.model_name + " has no input '" +
                                  input.name.substr(0, 100) + "' (inputs: " + expected + ")");
    }
  }
  // Leases on the shared-memory regions this request uses: their mappings outlive the request
  // even when a client unregisters them meanwhile.
  std::vector<SharedMemoryLease> leases;
  // Views of the store objects bound as inputs: the store keeps them until the request ends.
  std::vector<store::ObjectView> store_views;
  store_views.reserve(request.inputs.size());
  const auto lease = [&](const SharedMemoryRef& ref) -> Result<std::span<uint8_t>> {
    ZD_RETURN_IF_ERROR(SharedMemoryAllowed(options_.allow_client_shm));
    ZD_ASSIGN_OR_RETURN(SharedMemoryLease held,
                        shared_memory_.Lease(ref.region, ref.offset, ref.byte_size));
    leases.push_back(std::move(held));
    return leases.back().bytes();
  };
  std::vector<ConstTensorView> inputs;
  for (const TensorInfo& model_input : info.inputs) {
    const auto it = std::find_if(request.inputs.begin(), request.inputs.end(),
                                 [&](const InferInput& i) { return i.name == model_input.name; });
    if (it == request.inputs.end()) {
      return InvalidArgumentError("input '" + model_input.name + "' of model " +
                                  request.model_name + " is missing");
    }
    std::span<const uint8_t> data = it->data;
    if (it->store_object) {
      if (options_.store == nullptr) {
        return FailedPreconditionError("input '" + it->name +
                                       "' names a store object, but this server has no store "
                                       "(start zerodet serve with --store SOCKET)");
      }
      auto view = options_.store->Get(*it->store_object);
      if (!view.ok()) return view.status().WithContext("input '" + it->name + "'");
      store_views.push_back(std::move(*view));
      data = store_views.back().data();
    } else if (it->shared_memory) {
      auto bytes = lease(*it->shared_memory);
      if (!bytes.ok()) return bytes.status().WithContext("input '" + it->name + "'");
      data = *bytes;
    }
    ZD_ASSIGN_OR_RETURN(ConstTensorView view, BindInput(*it, data, model_input));
    inputs.push_back(std::move(view));
  }
  std::vector<size_t> selected;
  if (request.outputs.empty()) {
    for (size_t i = 0; i < info.outputs.size(); ++i) selected.push_back(i);
  } else {
    for (const std::string& name : request.outputs) {
      const auto it = std::find_if(info.outputs.begin(), info.outputs.end(),
                                   [&](const TensorInfo& t) { return t.name == name; });
      if (it == info.outputs.end()) {
        return InvalidArgumentError("model " + request.model_name + " has no output '" +
                                    name.substr(0, 100) + "'");
      }
      selected.push_back(static_cast<size_t>(it - info.outputs.begin()));
    }
  }
  for (const auto& [name, ref] : request.output_shared_memory) {
    const bool chosen = std::any_of(selected.begin(), selected.end(),
                                    [&](size_t i) { return info.outputs[i].name == name; });
    if (!chosen) {
      return InvalidArgumentError("shared-memory output '" + name.substr(0, 100) +
                                  "' is not an output of model " + request.model_name +
                                  " that the request asks for");
    }
  }
  stages.preprocess = stage.LapMs() / 1000;
  ZD_ASSIGN_OR_RETURN(std::vector<TensorView> outputs, backend.Run(inputs));
  stages.infer = stage.LapMs() / 1000;
  std::vector<InferOutput> results;
  for (size_t i : selected) {
    const TensorView& out = outputs[i];
    InferOutput result{
        info.outputs[i].name, out.dtype, out.shape,
        std::span<const uint8_t>(static_cast<const uint8_t*>(out.data), out.size_bytes()), nullptr};
    if (const auto target = request.output_shared_memory.find(info.outputs[i].name);
        target != request.output_shared_memory.end()) {
      auto bytes = lease(target->second);
      if (!bytes.ok()) return bytes.status().WithContext("output '" + info.outputs[i].name + "'");
      if (bytes->size() < result.data.size()) {
        return InvalidArgumentError(
            "output '" + info.outputs[i].name + "' has " + std::to_string(result.data.size()) +
            " bytes; its shared-memory range holds " + std::to_string(bytes->size()));
      }
      std::copy(result.data.begin(), result.data.end(), bytes->begin());
      result.data = bytes->first(result.data.size());
      result.shared_memory = &target->second;
    }
    results.push_back(std::move(result));
  }
  const Status sunk = sink(ServedBy{handle.name(), handle.version()}, results);
  stages.postprocess = stage.LapMs() / 1000;
  return sunk;
}

Result<DetectResponse> InferenceService::Detect(const DetectRequest& request) {
  ServerMetrics::InFlight inflight(*metrics_, "detect");
  RequestStageSeconds stages;
  const Stopwatch total;
  Result<DetectResponse> response = DetectStages(request, inflight, stages);
  metrics_->RecordRequest("detect", request.model_name,
                          response.ok() || KnownModel(request.model_name), response.status(),
                          stages, total.ElapsedMs() / 1000, 1);
  return response;
}

Result<DetectResponse> InferenceService::DetectStages(const DetectRequest& request,
                                                      ServerMetrics::InFlight& inflight,
                                                      RequestStageSeconds& stages) {
  for (const auto& [what, value] : {std::pair{"conf", request.conf}, {"iou", request.iou}}) {
    if (value && !(*value >= 0 && *value <= 1)) {
      return InvalidArgumentError(std::string(what) + " must be within 0..1");
    }
  }
  if (request.max_detections && (*request.max_detections < 1 || *request.max_detections > 10000)) {
    return InvalidArgumentError("max_det must be within 1..10000");
  }
  DecodeOptions decode;
  decode.max_pixels = options_.max_image_pixels;
  const Stopwatch decoding;
  auto decoded = DecodeImage(request.image, request.source_name, decode);
  if (!decoded.ok()) {
    // An image over the pixel limit is the request's fault (400), not the server's load (429).
    if (decoded.status().code() == StatusCode::kResourceExhausted) {
      return InvalidArgumentError(decoded.status().message());
    }
    return decoded.status();
  }
  DecodedImage image = std::move(decoded).value();
  const double decode_ms = decoding.ElapsedMs();

  const Stopwatch queueing;
  auto acquired =
      AcquireQueued(request.model_name, request.model_version, request.deadline, inflight);
  stages.queue = queueing.ElapsedMs() / 1000;
  if (!acquired.ok()) return acquired.status();
  ModelHandle handle = std::move(*acquired);
  Detector& detector = handle.detector();
  const ParamsGuard guard(detector);
  DetectParams params = guard.saved();
  if (request.conf) params.conf_threshold = *request.conf;
  if (request.iou) params.iou_threshold = *request.iou;
  if (request.max_detections) params.max_detections = *request.max_detections;
  if (request.agnostic) params.class_agnostic = *request.agnostic;
  detector.set_params(params);
  ZD_ASSIGN_OR_RETURN(DetectionResult result,
                      detector.Detect(image.image.view(), image.source_width, image.source_height));

  DetectResponse response;
  response.served_by = {handle.name(), handle.version()};
  response.width = image.source_width;
  response.height = image.source_height;
  response.class_names = detector.spec().class_names;
  response.timing = result.timing;
  response.timing.decode_ms = decode_ms;
  const Stopwatch annotating;
  if (request.annotate) {
    ZD_ASSIGN_OR_RETURN(
        response.annotated_jpeg,
        EncodeAnnotatedJpeg(image.image.view(), result.detections, response.class_names));
  }
  // Decoding the image is preprocessing, annotating it postprocessing.
  stages.preprocess = (decode_ms + result.timing.preprocess_ms) / 1000;
  stages.infer = result.timing.infer_ms / 1000;
  stages.postprocess = (result.timing.postprocess_ms + annotating.ElapsedMs()) / 1000;
  response.detections = std::move(result.detections);
  return response;
}

std::string DetectResponseJson(const DetectResponse& response) {
  nlohmann::ordered_json json;
  json["model"] = response.served_by.model_name;
  json["version"] = response.served_by.model_version;
  json["width"] = response.width;
  json["height"] = response.height;
  json["detections"] = DetectionsToJson(response.detections, response.class_names);
  const StageTimings& t = response.timing;
  json["timing_ms"] = StageTimesToJson(t.decode_ms, t.preprocess_ms, t.infer_ms, t.postprocess_ms);
  return ToJsonLine(json);
}

}  // namespace zerodet::server
