// InferenceService: what `zerodet serve` does for a request, without any transport: the KServe
// v2 (Open Inference Protocol) operations on the models of a ModelManager, and zerodet's own
// detection on an encoded image. The HTTP and gRPC front ends translate their wire formats into
// these calls, so both answer alike.
//
// Tensors are the ONNX model's own: an infer request binds its input bytes as the model's inputs
// (no copy) and its outputs are the model's raw outputs, so a client that sends a preprocessed
// tensor gets exactly what the model computes. A model that is not loaded is loaded by the
// first request that needs it (infer, detect or metadata), unlike Triton, where it must be
// loaded first.
//
// Tensors may also sit in system shared-memory regions clients registered (off unless
// Options::allow_client_shm): such an input is bound straight from the mapping, such an output
// written into it. An input may also name an object of zerodet's store (Options::store): bound
// straight from the store's arena, held by a view until the request ends.
//
// Ownership: the service borrows the manager, which must outlive it. Tensor data in requests is
// borrowed from the caller for the duration of the call; output views passed to a sink are valid
// only during the sink's call. A request holds a lease on the regions it uses until it ends.
// Metrics: every Infer and Detect is counted and timed per stage in metrics() (server_metrics.h),
// whichever front end called it.
// Dynamic batching: for a model whose config has dynamic_batching (Triton's), concurrent Infer
// calls with inputs of the same shapes, and Detect calls with the same parameters, run as one
// batch (dynamic_batcher.h); each still gets its own outputs, sink call and metrics. Requests
// without a version are routed per batch (a traffic split applies to batches, not requests).
// Thread-safety: every method may be called from any thread concurrently (the manager leases one
// model instance per call, or per batch).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/status.h"
#include "zerodet/core/tensor.h"
#include "zerodet/infer/detector.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/server/dynamic_batcher.h"
#include "zerodet/server/server_metrics.h"
#include "zerodet/server/shared_memory_registry.h"
#include "zerodet/store/client.h"

namespace zerodet::server {

// KServe v2 datatype names ("FP32", "UINT8", ...) of the dtypes models use. Errors:
// kInvalidArgument for a name the protocol does not define or zerodet models do not use (the
// message lists the supported ones).
Result<DType> ParseKServeDatatype(std::string_view name);
std::string_view KServeDatatype(DType dtype);

// A byte range of a registered system shared-memory region (shared_memory_region,
// shared_memory_offset, shared_memory_byte_size in the protocol).
struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// A tensor as a request carries it: raw little-endian bytes, row-major.
struct InferInput {
  std::string name;
  std::string datatype;  // KServe name
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
  // Set: the bytes are in this shared-memory range instead (`data` is empty); bound as the
  // model input straight from the mapping.
  std::optional<SharedMemoryRef> shared_memory;
  // Set: the bytes are this sealed object of zerodet's store (Options::store), e.g. a sample of
  // a dataset preloaded `--as letterbox:S`; bound as the model input straight from the arena.
  std::optional<store::ObjectId> store_object;
};

struct InferRequest {
  std::string model_name;
  std::optional<int64_t> model_version;  // nullopt: the model's routing
  std::string id;
  std::vector<InferInput> inputs;
  // The outputs to return, by name; empty: all of the model's outputs.
  std::vector<std::string> outputs;
  // Outputs to write into shared memory instead of returning them (each also in `outputs`).
  // The range must hold the output; its first bytes receive it.
  std::map<std::string, SharedMemoryRef> output_shared_memory;
  Deadline deadline = Deadline::Never();
};

// A model output during InferSink's call.
struct InferOutput {
  std::string_view name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
  // Set: the output was written into this range (data views it there); the front end answers
  // with the region's parameters instead of the bytes.
  const SharedMemoryRef* shared_memory = nullptr;
};

// What served a request.
struct ServedBy {
  std::string model_name;
  int64_t model_version = 0;
};

// Receives the outputs while the model instance is still held (they point into its memory).
using InferSink = std::function<Status(const ServedBy&, std::span<const InferOutput>)>;

struct TensorMetadata {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;  // -1 for dynamic dimensions
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;  // the served versions, as strings (the protocol's form)
  std::string platform = "onnxruntime_onnx";
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};

struct DetectRequest {
  std::string model_name;
  std::optional<int64_t> model_version;
  std::span<const uint8_t> image;  // JPEG, PNG or BMP
  std::string source_name;         // for errors ("request body", "part 2")
  // Unset fields keep the model's defaults (its config's thresholds, else zerodet's).
  std::optional<float> conf;
  std::optional<float> iou;
  std::optional<int> max_detections;
  std::optional<bool> agnostic;
  bool annotate = false;  // also return the image with the boxes drawn, as JPEG
  Deadline deadline = Deadline::Never();
};

struct DetectResponse {
  ServedBy served_by;
  int width = 0;  // the image's size (boxes are in its pixels)
  int height = 0;
  std::vector<Detection> detections;
  std::vector<std::string> class_names;  // the model's (for the detection JSON)
  StageTimings timing;
  std::vector<uint8_t> annotated_jpeg;  // when asked for
};

// The answer for one detected image, as /v1/detect and the gRPC detection convention send it:
// {"model", "version", "width", "height", "detections": [...], "timing_ms": {"decode",
// "preprocess", "infer", "postprocess"}}: the detections and stage times exactly as
// `zerodet detect` prints them (core/detection_json.h).
std::string DetectResponseJson(const DetectResponse& response);

class InferenceService {
 public:
  struct Options {
    // Largest decoded image /v1/detect accepts (width x height), besides the codec's own limit.
    uint64_t max_image_pixels = uint64_t{64} << 20;
    // The system shared-memory extension (off by default, as Triton's: a client that may
    // register regions makes the server map its memory).
    bool allow_client_shm = false;
    // zerodet's store, for inputs that name its objects (borrowed; must outlive the service).
    // nullptr: such inputs are refused.
    store::StoreClient* store = nullptr;
    // Queue policy, per model: at most max_queue requests may wait for a model (its load, a
    // free instance or its batch) at once, more are refused with kResourceExhausted (HTTP 429,
    // gRPC RESOURCE_EXHAUSTED); a request waits at most queue_timeout, then fails with
    // kUnavailable (HTTP 503). 0: unbounded / only the request's own deadline. A model whose
    // config has a queue policy (dynamic_batching's, Triton's default_queue_policy) uses its
    // own values instead.
    uint32_t max_queue = 0;
    std::chrono::milliseconds queue_timeout{0};
  };

  InferenceService(ModelManager& manager, Options options);

  // Server metadata: name "zerodet", the version, and the protocol extensions it implements.
  std::string name() const { return "zerodet"; }
  std::string version() const;
  std::vector<std::string> extensions() const;

  // Whether `name` (or one version of it) is ready to serve now, without loading it.
  // Errors: kNotFound for a model or version the repository does not have.
  Result<bool> ModelReady(std::string_view name, std::optional<int64_t> version) const;

  // The model's tensors (loads it when it is not loaded). Errors: as ModelManager::Acquire.
  Result<ModelMetadata> Metadata(std::string_view name, std::optional<int64_t> version,
                                 Deadline deadline);

  // Runs the model on the request's tensors and hands the outputs to `sink`. Errors:
  // kInvalidArgument for an input that is missing, unknown, given twice, of the wrong datatype,
  // shape or byte size (the message names it and both values), or an unknown output;
  // ModelManager::Acquire's errors; the backend's; the sink's.
  Status Infer(const InferRequest& request, const InferSink& sink);

  // Decodes the image and runs the model's full detection (letterbox, Run, decode, NMS).
  // Errors: the codec's (kInvalidArgument / kCorruptData / kResourceExhausted for an image too
  // large), kInvalidArgument for thresholds outside 0..1 or max_detections outside 1..10000,
  // Acquire's, the detector's.
  Result<DetectResponse> Detect(const DetectRequest& request);

  // The system shared-memory extension (shared_memory_registry.h). Errors, besides the
  // registry's: kPermissionDenied when Options::allow_client_shm is off.
  Status RegisterSharedMemory(const std::string& name, const std::string& key, uint64_t offset,
                              uint64_t byte_size);
  // `name` nullopt: every region.
  Status UnregisterSharedMemory(const std::optional<std::string>& name);
  Result<std::vector<SharedMemoryRegionStatus>> SharedMemoryStatus(
      const std::optional<std::string>& name) const;

  ModelManager& manager() { return manager_; }
  ServerMetrics& metrics() { return *metrics_; }

 private:
  struct BoundInfer;
  struct ServiceJob;
  struct InferJob;
  struct DetectJob;

  // A request's place in its model's queue (Options::max_queue); leaves it when destroyed.
  class QueueSlot {
   public:
    QueueSlot() = default;
    QueueSlot(InferenceService* service, std::string name)
        : service_(service), name_(std::move(name)) {}
    QueueSlot(QueueSlot&& other) noexcept
        : service_(std::exchange(other.service_, nullptr)), name_(std::move(other.name_)) {}
    QueueSlot& operator=(QueueSlot&&) = delete;
    ~QueueSlot();

   private:
    InferenceService* service_ = nullptr;
    std::string name_;
  };

  // Takes a place in `name`'s queue. Errors: kResourceExhausted when the most requests wait for
  // it already: `model_max_queue` (its config's queue policy), or Options::max_queue when 0.
  Result<QueueSlot> EnterQueue(const std::string& name, uint32_t model_max_queue = 0);
  // The queue timeout: the model's (`model_timeout_us`, its config's), else Options's.
  std::chrono::microseconds QueueTimeout(uint64_t model_timeout_us) const;
  // `deadline`, shortened to the queue timeout from now.
  Deadline QueueDeadline(Deadline deadline, uint64_t model_timeout_us = 0) const;
  Status QueueTimeoutError(const std::string& name, uint64_t model_timeout_us = 0) const;
  // Acquire with QueueDeadline(deadline, model_timeout_us); running out of the queue timeout
  // is kUnavailable.
  Result<ModelHandle> AcquireWithin(const std::string& name, std::optional<int64_t> version,
                                    Deadline deadline, uint64_t model_timeout_us = 0);
  // EnterQueue, then AcquireWithin, counted as queued in `inflight` while it waits.
  Result<ModelHandle> AcquireQueued(const std::string& name, std::optional<int64_t> version,
                                    Deadline deadline, ServerMetrics::InFlight& inflight);

  // Infer, one request per Run.
  Status InferStages(const InferRequest& request, const InferSink& sink,
                     ServerMetrics::InFlight& inflight, RequestStageSeconds& stages);
  // Runs one gathered batch on the instance its gatherer took.
  using RunBatch = std::function<void(ModelHandle&, std::span<ServiceJob* const>)>;
  // Queues `job` (a request of `kind` for `model`, whose own deadline is `deadline`) in the
  // batcher under the model's queue policy; its batch's gatherer takes an instance and hands
  // the batch to `run`. Errors: EnterQueue's; the job's own status once its batch ran.
  Status SubmitBatched(std::string_view kind, const std::string& model,
                       std::optional<int64_t> version, Deadline deadline, ServiceJob& job,
                       const BatchingPolicy& policy, const RunBatch& run);
  // Infer through the dynamic batcher (the model's config has dynamic_batching).
  Status InferBatched(InferJob& job, const BatchingPolicy& policy);
  void RunInferBatch(ModelHandle& handle, std::span<InferJob* const> batch);
  // Checks a request against the model's tensors and binds its inputs (store objects and
  // shared-memory regions straight from their mappings). Errors: as Infer's.
  Status Bind(const InferRequest& request, const ModelInfo& info, BoundInfer& bound);
  // Hands a request's outputs (`outputs` as the model's, this request's rows) to its sink,
  // writing those it asked for in shared memory there first.
  Status Deliver(const InferRequest& request, const ModelInfo& info, BoundInfer& bound,
                 std::span<const TensorView> outputs, const ServedBy& served_by,
                 const InferSink& sink);
  Result<std::span<uint8_t>> LeaseRegion(const SharedMemoryRef& ref, BoundInfer& bound);

  // Detect's stages; `batch` receives the size of the batch the image ran in.
  Result<DetectResponse> DetectStages(const DetectRequest& request,
                                      ServerMetrics::InFlight& inflight,
                                      RequestStageSeconds& stages, int64_t& batch);
  Status DetectBatched(DetectJob& job, const BatchingPolicy& policy);
  void RunDetectBatch(ModelHandle& handle, std::span<DetectJob* const> batch);
  // The response for one detected image (annotated when asked), and its stage times.
  Result<DetectResponse> FinishDetect(const DetectRequest& request, const ServedBy& served_by,
                                      const Detector& detector, const DecodedImage& image,
                                      double decode_ms, DetectionResult result,
                                      RequestStageSeconds& stages);
  // Whether a failed request named a model the repository has (its metrics label).
  bool KnownModel(std::string_view name) const;

  ModelManager& manager_;
  Options options_;
  std::unique_ptr<ServerMetrics> metrics_;
  SharedMemoryRegistry shared_memory_;
  DynamicBatcher batcher_;
  // Requests waiting per model name, for Options::max_queue.
  std::mutex queues_mutex_;
  std::map<std::string, uint32_t, std::less<>> waiting_;
};

}  // namespace zerodet::server
