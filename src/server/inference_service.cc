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

Result<InferenceService::QueueSlot> InferenceService::EnterQueue(const std::string& name,
                                                                 uint32_t model_max_queue) {
  const uint32_t max_queue = model_max_queue > 0 ? model_max_queue : options_.max_queue;
  if (max_queue == 0) return QueueSlot();
  const std::lock_guard lock(queues_mutex_);
  uint32_t& waiting = waiting_[name];
  if (waiting >= max_queue) {
    return ResourceExhaustedError("model " + name.substr(0, 100) + " has " +
                                  std::to_string(waiting) +
                                  " requests waiting, the most its queue holds; retry later");
  }
  waiting += 1;
  return QueueSlot(this, name);
}

InferenceService::QueueSlot::~QueueSlot() {
  if (service_ == nullptr) return;
  const std::lock_guard lock(service_->queues_mutex_);
  const auto it = service_->waiting_.find(name_);
  if (it != service_->waiting_.end() && --it->second == 0 && service_->waiting_.size() > 1024) {
    service_->waiting_.erase(it);
  }
}

std::chrono::microseconds InferenceService::QueueTimeout(uint64_t model_timeout_us) const {
  if (model_timeout_us > 0) return std::chrono::microseconds(model_timeout_us);
  return options_.queue_timeout;
}

Deadline InferenceService::QueueDeadline(Deadline deadline, uint64_t model_timeout_us) const {
  const std::chrono::microseconds timeout = QueueTimeout(model_timeout_us);
  if (timeout.count() <= 0) return deadline;
  return std::min(deadline, Deadline::After(timeout));
}

Status InferenceService::QueueTimeoutError(const std::string& name,
                                           uint64_t model_timeout_us) const {
  return UnavailableError(
      "model " + name.substr(0, 100) + " was not free within the queue " + "timeout of " +
      std::to_string(QueueTimeout(model_timeout_us).count() / 1000) + " ms; retry later");
}

Result<ModelHandle> InferenceService::AcquireWithin(const std::string& name,
                                                    std::optional<int64_t> version,
                                                    Deadline deadline, uint64_t model_timeout_us) {
  AcquireOptions acquire;
  acquire.version = version;
  acquire.deadline = QueueDeadline(deadline, model_timeout_us);
  const bool queue_deadline = acquire.deadline < deadline;
  Result<ModelHandle> handle = manager_.Acquire(name, acquire);
  if (!handle.ok() && queue_deadline && handle.status().code() == StatusCode::kDeadlineExceeded) {
    return QueueTimeoutError(name, model_timeout_us);
  }
  return handle;
}

Result<ModelHandle> InferenceService::AcquireQueued(const std::string& name,
                                                    std::optional<int64_t> version,
                                                    Deadline deadline,
                                                    ServerMetrics::InFlight& inflight) {
  ZD_ASSIGN_OR_RETURN(QueueSlot slot, EnterQueue(name));
  inflight.QueueBegin();
  Result<ModelHandle> handle = AcquireWithin(name, version, deadline);
  inflight.QueueEnd();
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

// A request's inputs bound for Run and the outputs it asked for, with what keeps its input bytes
// alive until it ends: leases on the shared-memory regions it uses (their mappings outlive it
// even when a client unregisters them meanwhile) and views of the store objects it names.
struct InferenceService::BoundInfer {
  std::vector<SharedMemoryLease> leases;
  std::vector<store::ObjectView> store_views;
  std::vector<ConstTensorView> inputs;  // in the model's input order
  std::vector<size_t> selected;         // the outputs to return, as indices of the model's
};

// A request waiting in the dynamic batcher: what every kind shares (its metrics).
struct InferenceService::ServiceJob : DynamicBatcher::Job {
  ServerMetrics::InFlight* inflight = nullptr;
  RequestStageSeconds stages;
};

// An infer request waiting in the dynamic batcher.
struct InferenceService::InferJob : ServiceJob {
  const InferRequest* request = nullptr;
  const InferSink* sink = nullptr;
};

Result<std::span<uint8_t>> InferenceService::LeaseRegion(const SharedMemoryRef& ref,
                                                         BoundInfer& bound) {
  ZD_RETURN_IF_ERROR(SharedMemoryAllowed(options_.allow_client_shm));
  ZD_ASSIGN_OR_RETURN(SharedMemoryLease held,
                      shared_memory_.Lease(ref.region, ref.offset, ref.byte_size));
  bound.leases.push_back(std::move(held));
  return bound.leases.back().bytes();
}

Status InferenceService::Bind(const InferRequest& request, const ModelInfo& info,
                              BoundInfer& bound) {
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
  bound.store_views.reserve(request.inputs.size());
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
      bound.store_views.push_back(std::move(*view));
      data = bound.store_views.back().data();
    } else if (it->shared_memory) {
      auto bytes = LeaseRegion(*it->shared_memory, bound);
      if (!bytes.ok()) return bytes.status().WithContext("input '" + it->name + "'");
      data = *bytes;
    }
    ZD_ASSIGN_OR_RETURN(ConstTensorView view, BindInput(*it, data, model_input));
    bound.inputs.push_back(std::move(view));
  }
  if (request.outputs.empty()) {
    for (size_t i = 0; i < info.outputs.size(); ++i) bound.selected.push_back(i);
  } else {
    for (const std::string& name : request.outputs) {
      const auto it = std::find_if(info.outputs.begin(), info.outputs.end(),
                                   [&](const TensorInfo& t) { return t.name == name; });
      if (it == info.outputs.end()) {
        return InvalidArgumentError("model " + request.model_name + " has no output '" +
                                    name.substr(0, 100) + "'");
      }
      bound.selected.push_back(static_cast<size_t>(it - info.outputs.begin()));
    }
  }
  for (const auto& entry : request.output_shared_memory) {
    const std::string& name = entry.first;  // not a structured binding: clang 14 cannot capture one
    const bool chosen = std::any_of(bound.selected.begin(), bound.selected.end(),
                                    [&](size_t i) { return info.outputs[i].name == name; });
    if (!chosen) {
      return InvalidArgumentError("shared-memory output '" + name.substr(0, 100) +
                                  "' is not an output of model " + request.model_name +
                                  " that the request asks for");
    }
  }
  return Status::Ok();
}

Status InferenceService::Deliver(const InferRequest& request, const ModelInfo& info,
                                 BoundInfer& bound, std::span<const TensorView> outputs,
                                 const ServedBy& served_by, const InferSink& sink) {
  std::vector<InferOutput> results;
  for (size_t i : bound.selected) {
    const TensorView& out = outputs[i];
    InferOutput result{
        info.outputs[i].name, out.dtype, out.shape,
        std::span<const uint8_t>(static_cast<const uint8_t*>(out.data), out.size_bytes()), nullptr};
    if (const auto target = request.output_shared_memory.find(info.outputs[i].name);
        target != request.output_shared_memory.end()) {
      auto bytes = LeaseRegion(target->second, bound);
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
  return sink(served_by, results);
}

namespace {

// What a request's batch shares with the requests it may batch with: each input's name,
// datatype and dimensions after the first, in name order. nullopt: the request cannot be
// batched (no inputs, a scalar, or inputs whose first dimensions differ); it runs alone.
std::optional<std::pair<std::string, int64_t>> BatchKey(const InferRequest& request) {
  if (request.inputs.empty()) return std::nullopt;
  std::vector<const InferInput*> inputs;
  for (const InferInput& input : request.inputs) inputs.push_back(&input);
  std::sort(inputs.begin(), inputs.end(),
            [](const InferInput* a, const InferInput* b) { return a->name < b->name; });
  const int64_t rows = inputs.front()->shape.empty() ? 0 : inputs.front()->shape.front();
  if (rows < 1) return std::nullopt;
  std::string key;
  for (const InferInput* input : inputs) {
    if (input->shape.empty() || input->shape.front() != rows) return std::nullopt;
    key += input->name + '\0' + input->datatype + '\0';
    for (size_t d = 1; d < input->shape.size(); ++d) key += std::to_string(input->shape[d]) + ',';
    key += '\n';
  }
  return std::pair{std::move(key), rows};
}

std::string BatchQueueName(std::string_view kind, std::string_view model,
                           std::optional<int64_t> version) {
  std::string name = std::string(kind) + '/' + std::string(model);
  if (version) name += ':' + std::to_string(*version);
  return name;
}

}  // namespace

Status InferenceService::Infer(const InferRequest& request, const InferSink& sink) {
  ServerMetrics::InFlight inflight(*metrics_, "infer");
  RequestStageSeconds stages;
  const Stopwatch total;
  int64_t batch = !request.inputs.empty() && !request.inputs.front().shape.empty()
                      ? request.inputs.front().shape.front()
                      : 0;
  Status status;
  const std::optional<BatchingPolicy> policy = manager_.Batching(request.model_name);
  auto key = policy ? BatchKey(request) : std::nullopt;
  if (key) {
    InferJob job;
    job.request = &request;
    job.sink = &sink;
    job.inflight = &inflight;
    job.compatibility = std::move(key->first);
    job.rows = key->second;
    status = InferBatched(job, *policy);
    stages = job.stages;
    if (job.batch_rows > 0) batch = job.batch_rows;
  } else {
    status = InferStages(request, sink, inflight, stages);
  }
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
  BoundInfer bound;
  ZD_RETURN_IF_ERROR(Bind(request, info, bound));
  stages.preprocess = stage.LapMs() / 1000;
  ZD_ASSIGN_OR_RETURN(std::vector<TensorView> outputs, backend.Run(bound.inputs));
  stages.infer = stage.LapMs() / 1000;
  const Status sunk =
      Deliver(request, info, bound, outputs, ServedBy{handle.name(), handle.version()}, sink);
  stages.postprocess = stage.LapMs() / 1000;
  return sunk;
}

Status InferenceService::SubmitBatched(std::string_view kind, const std::string& model,
                                       std::optional<int64_t> version, Deadline deadline,
                                       ServiceJob& job, const BatchingPolicy& policy,
                                       const RunBatch& run) {
  const DynamicBatching& queue = policy.batching;
  ZD_ASSIGN_OR_RETURN(QueueSlot slot, EnterQueue(model, queue.max_queue_size));
  job.deadline = QueueDeadline(deadline, queue.queue_timeout_us);
  if (job.deadline < deadline) {
    job.expired_status = QueueTimeoutError(model, queue.queue_timeout_us);
  }
  job.inflight->QueueBegin();
  const Status status = batcher_.Submit(
      BatchQueueName(kind, model, version), job, policy, [&](DynamicBatcher::Gathering& gathering) {
        // This submitter gathers: it takes the instance the batch runs on, then the batch.
        Result<ModelHandle> handle =
            AcquireWithin(model, version, deadline, queue.queue_timeout_us);
        std::vector<ServiceJob*> jobs;
        for (DynamicBatcher::Job* taken : gathering.Take()) {
          auto* service_job = static_cast<ServiceJob*>(taken);
          service_job->inflight->QueueEnd();
          service_job->stages.queue =
              std::chrono::duration<double>(taken->taken_at - taken->queued_at).count();
          if (handle.ok()) {
            jobs.push_back(service_job);
          } else {
            taken->status = handle.status();
          }
        }
        if (!jobs.empty()) run(*handle, jobs);
      });
  job.inflight->QueueEnd();
  return status;
}

Status InferenceService::InferBatched(InferJob& job, const BatchingPolicy& policy) {
  const InferRequest& request = *job.request;
  return SubmitBatched("infer", request.model_name, request.model_version, request.deadline, job,
                       policy, [this](ModelHandle& handle, std::span<ServiceJob* const> jobs) {
                         std::vector<InferJob*> batch;
                         for (ServiceJob* j : jobs) batch.push_back(static_cast<InferJob*>(j));
                         RunInferBatch(handle, batch);
                       });
}

void InferenceService::RunInferBatch(ModelHandle& handle, std::span<InferJob* const> batch) {
  Backend& backend = handle->backend();
  const ModelInfo& info = backend.info();
  const ServedBy served_by{handle.name(), handle.version()};
  std::vector<BoundInfer> bound(batch.size());
  std::vector<size_t> ready;  // indices of the jobs whose inputs bound
  for (size_t j = 0; j < batch.size(); ++j) {
    const Stopwatch binding;
    batch[j]->status = Bind(*batch[j]->request, info, bound[j]);
    batch[j]->stages.preprocess = binding.ElapsedMs() / 1000;
    if (batch[j]->status.ok()) ready.push_back(j);
  }
  const bool dynamic_batch = !info.inputs.empty() && !info.inputs.front().shape.empty() &&
                             info.inputs.front().shape.front() < 0;
  if (ready.size() == 1 || !dynamic_batch) {
    // A lone request runs on its own bytes (no copy); a model with a static batch cannot take
    // more than one request per Run (its config asked for batching it cannot do).
    for (size_t j : ready) {
      InferJob& job = *batch[j];
      Stopwatch stage;
      auto outputs = backend.Run(bound[j].inputs);
      job.stages.infer = stage.LapMs() / 1000;
      job.batch_rows = job.rows;
      job.status = outputs.ok()
                       ? Deliver(*job.request, info, bound[j], *outputs, served_by, *job.sink)
                       : outputs.status();
      job.stages.postprocess = stage.LapMs() / 1000;
    }
    return;
  }
  // One input tensor per model input, the requests' rows one after another (the one copy
  // batching costs; Triton's batcher makes the same).
  const Stopwatch concatenating;
  int64_t rows = 0;
  for (size_t j : ready) rows += batch[j]->rows;
  std::vector<std::unique_ptr<uint8_t[]>> buffers;
  std::vector<ConstTensorView> inputs;
  for (size_t k = 0; k < info.inputs.size(); ++k) {
    size_t bytes = 0;
    for (size_t j : ready) bytes += bound[j].inputs[k].size_bytes();
    buffers.push_back(std::make_unique_for_overwrite<uint8_t[]>(bytes));
    uint8_t* at = buffers.back().get();
    for (size_t j : ready) {
      const ConstTensorView& part = bound[j].inputs[k];
      at = std::copy_n(static_cast<const uint8_t*>(part.data), part.size_bytes(), at);
    }
    std::vector<int64_t> shape = bound[ready.front()].inputs[k].shape;
    shape.front() = rows;
    inputs.emplace_back(buffers.back().get(), bound[ready.front()].inputs[k].dtype,
                        std::move(shape));
  }
  const double concatenate_seconds = concatenating.ElapsedMs() / 1000;
  const Stopwatch running;
  Result<std::vector<TensorView>> outputs = backend.Run(inputs);
  const double infer_seconds = running.ElapsedMs() / 1000;
  Status failed = outputs.status();
  if (failed.ok()) {
    for (size_t o = 0; o < outputs->size() && failed.ok(); ++o) {
      const TensorView& out = (*outputs)[o];
      if (out.shape.empty() || out.shape.front() != rows) {
        failed = InternalError("output '" + info.outputs[o].name + "' of model " + handle.name() +
                               " has shape " + ShapeToString(out.shape) + " for a batch of " +
                               std::to_string(rows) +
                               ": the model does not batch along its first dimension");
      }
    }
  }
  int64_t offset = 0;
  for (size_t j : ready) {
    InferJob& job = *batch[j];
    job.batch_rows = rows;
    job.stages.preprocess += concatenate_seconds;
    job.stages.infer = infer_seconds;
    if (!failed.ok()) {
      job.status = failed;
      continue;
    }
    const Stopwatch delivering;
    std::vector<TensorView> mine;
    for (const TensorView& out : *outputs) {
      const size_t row_bytes = out.size_bytes() / static_cast<size_t>(rows);
      TensorView part{static_cast<uint8_t*>(out.data) + static_cast<size_t>(offset) * row_bytes,
                      out.dtype, out.shape};
      part.shape.front() = job.rows;
      mine.push_back(std::move(part));
    }
    offset += job.rows;
    job.status = Deliver(*job.request, info, bound[j], mine, served_by, *job.sink);
    job.stages.postprocess = delivering.ElapsedMs() / 1000;
  }
}

// A /v1/detect image waiting in the dynamic batcher.
struct InferenceService::DetectJob : ServiceJob {
  const DetectRequest* request = nullptr;
  const DecodedImage* image = nullptr;
  double decode_ms = 0;
  Result<DetectResponse> response = InternalError("the image was not run");
};

namespace {

DetectParams ParamsFor(const DetectRequest& request, DetectParams params) {
  if (request.conf) params.conf_threshold = *request.conf;
  if (request.iou) params.iou_threshold = *request.iou;
  if (request.max_detections) params.max_detections = *request.max_detections;
  if (request.agnostic) params.class_agnostic = *request.agnostic;
  return params;
}

// Images batch together only when their requests ask for the same detection parameters (one
// Run decodes every image of it with the same thresholds).
std::string DetectBatchKey(const DetectRequest& request) {
  std::string key;
  const auto add = [&](const auto& value) {
    key += value ? std::to_string(*value) : std::string("-");
    key += ',';
  };
  add(request.conf);
  add(request.iou);
  add(request.max_detections);
  add(request.agnostic);
  return key;
}

}  // namespace

Result<DetectResponse> InferenceService::Detect(const DetectRequest& request) {
  ServerMetrics::InFlight inflight(*metrics_, "detect");
  RequestStageSeconds stages;
  const Stopwatch total;
  int64_t batch = 1;
  Result<DetectResponse> response = DetectStages(request, inflight, stages, batch);
  metrics_->RecordRequest("detect", request.model_name,
                          response.ok() || KnownModel(request.model_name), response.status(),
                          stages, total.ElapsedMs() / 1000, batch);
  return response;
}

Result<DetectResponse> InferenceService::DetectStages(const DetectRequest& request,
                                                      ServerMetrics::InFlight& inflight,
                                                      RequestStageSeconds& stages, int64_t& batch) {
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
  const DecodedImage image = std::move(decoded).value();
  const double decode_ms = decoding.ElapsedMs();

  if (const std::optional<BatchingPolicy> policy = manager_.Batching(request.model_name)) {
    DetectJob job;
    job.request = &request;
    job.image = &image;
    job.decode_ms = decode_ms;
    job.inflight = &inflight;
    job.compatibility = DetectBatchKey(request);
    const Status status = DetectBatched(job, *policy);
    stages = job.stages;
    if (job.batch_rows > 0) batch = job.batch_rows;
    if (!status.ok()) return status;
    return std::move(job.response);
  }

  const Stopwatch queueing;
  auto acquired =
      AcquireQueued(request.model_name, request.model_version, request.deadline, inflight);
  stages.queue = queueing.ElapsedMs() / 1000;
  if (!acquired.ok()) return acquired.status();
  ModelHandle handle = std::move(*acquired);
  Detector& detector = handle.detector();
  const ParamsGuard guard(detector);
  detector.set_params(ParamsFor(request, guard.saved()));
  ZD_ASSIGN_OR_RETURN(DetectionResult result,
                      detector.Detect(image.image.view(), image.source_width, image.source_height));
  return FinishDetect(request, {handle.name(), handle.version()}, detector, image, decode_ms,
                      std::move(result), stages);
}

Result<DetectResponse> InferenceService::FinishDetect(const DetectRequest& request,
                                                      const ServedBy& served_by,
                                                      const Detector& detector,
                                                      const DecodedImage& image, double decode_ms,
                                                      DetectionResult result,
                                                      RequestStageSeconds& stages) {
  DetectResponse response;
  response.served_by = served_by;
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

Status InferenceService::DetectBatched(DetectJob& job, const BatchingPolicy& policy) {
  const DetectRequest& request = *job.request;
  return SubmitBatched("detect", request.model_name, request.model_version, request.deadline, job,
                       policy, [this](ModelHandle& handle, std::span<ServiceJob* const> jobs) {
                         std::vector<DetectJob*> batch;
                         for (ServiceJob* j : jobs) batch.push_back(static_cast<DetectJob*>(j));
                         RunDetectBatch(handle, batch);
                       });
}

void InferenceService::RunDetectBatch(ModelHandle& handle, std::span<DetectJob* const> batch) {
  Detector& detector = handle.detector();
  const ParamsGuard guard(detector);
  // Every job of a batch shares its detection parameters (DetectBatchKey).
  detector.set_params(ParamsFor(*batch.front()->request, guard.saved()));
  const ServedBy served_by{handle.name(), handle.version()};
  const size_t capacity = std::max<size_t>(1, detector.batch_capacity());
  for (size_t begin = 0; begin < batch.size(); begin += capacity) {
    const std::span<DetectJob* const> chunk =
        batch.subspan(begin, std::min(capacity, batch.size() - begin));
    std::vector<DetectJob*> staged;
    for (DetectJob* job : chunk) {
      const DecodedImage& image = *job->image;
      job->status = detector.Stage(staged.size(), image.image.view(),
                                   ImageSize{image.source_width, image.source_height});
      if (job->status.ok()) staged.push_back(job);
    }
    if (staged.empty()) continue;
    Result<std::vector<DetectionResult>> results = detector.RunStaged(staged.size());
    for (size_t i = 0; i < staged.size(); ++i) {
      DetectJob& job = *staged[i];
      job.batch_rows = static_cast<int64_t>(staged.size());
      if (!results.ok()) {
        job.status = results.status();
        continue;
      }
      job.response = FinishDetect(*job.request, served_by, detector, *job.image, job.decode_ms,
                                  std::move((*results)[i]), job.stages);
      job.status = job.response.status();
    }
  }
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
