// GrpcServer: the gRPC front end of `zerodet serve`: KServe v2 / Triton's
// inference.GRPCInferenceService (src/server/grpc/grpc_service.proto) on an InferenceService.
// Each RPC is translated into the service's calls, so gRPC and HTTP answer alike; stock Triton
// and KServe gRPC clients work unchanged.
//
// RPCs:
//   ServerLive, ServerReady, ServerMetadata (name "zerodet", the version, the extensions).
//   ModelReady, ModelMetadata, ModelConfig (Triton's ModelConfig built from the model's
//     config and its tensors), per version too ("" or a decimal version).
//   ModelInfer and ModelStreamInfer: the model's raw tensors. Inputs come from
//     raw_input_contents (preferred: bound as the model input in place, no copy) or from the
//     typed contents (fp32_contents, int64_contents, int_contents, uint_contents; FP16 only as
//     raw). Outputs are answered in raw_output_contents, as Triton does; requested outputs are
//     honoured (none requested: every output). The client's deadline bounds the wait for a
//     load or a free instance. A stream answers its requests in order; a failed request is
//     answered with error_message and the stream goes on.
//   ModelStatistics: per loaded version (and any version that served a gRPC request):
//     memory_usage from the manager's charge ("CPU"/"GPU", device, bytes); success / fail
//     counts and durations, inference_count, execution_count, last_inference and compute_infer
//     as this gRPC front end observed them (requests over HTTP are not counted here).
//   RepositoryIndex (one entry per model version the manager knows, else one per model:
//     state READY / LOADING / UNAVAILABLE with the reason, "" for a model that loads on first
//     use), RepositoryModelLoad, RepositoryModelUnload (bearer token when set).
//   SystemSharedMemory* and CudaSharedMemory*: UNIMPLEMENTED (not available yet).
//
// Detection over gRPC (zerodet's convention, the gRPC form of POST /v1/detect): a ModelInfer
// whose only input has datatype BYTES and shape [N] (1 <= N <= 64) holds N encoded images (JPEG,
// PNG or BMP), either in raw_input_contents (Triton's BYTES serialization: for each element a
// 4-byte little-endian length, then that many bytes) or as N bytes_contents entries. The input's
// name is free ("image" by convention). Request parameters, all optional: "conf" and "iou"
// (double, 0..1), "max_det" (int64, 1..10000), "agnostic" (bool), "annotate" (bool); a number
// may also come as a string. The answer is the BYTES output "detections", shape [N], element i
// the JSON of image i:
//   {"model": "yolov8n", "version": 1, "width": 810, "height": 1080,
//    "detections": [{"class_id": 0, "class": "person", "score": 0.8934, "box": [x1, y1, x2, y2]}],
//    "timing_ms": {"decode": .., "preprocess": .., "infer": .., "postprocess": ..}}
// (the detections as `zerodet detect` writes them, core/detection_json.h), plus with annotate
// the BYTES output "annotated", shape [N], each the image with its boxes drawn as JPEG. A
// requested output other than these two is INVALID_ARGUMENT.
//
// Errors are gRPC status codes with a one-line message: kNotFound -> NOT_FOUND,
// kInvalidArgument / kCorruptData -> INVALID_ARGUMENT, kUnavailable -> UNAVAILABLE,
// kResourceExhausted -> RESOURCE_EXHAUSTED, kDeadlineExceeded -> DEADLINE_EXCEEDED,
// kPermissionDenied -> PERMISSION_DENIED, kUnimplemented -> UNIMPLEMENTED, kFailedPrecondition
// -> FAILED_PRECONDITION, kAlreadyExists -> ALREADY_EXISTS, anything else INTERNAL. A missing or
// wrong bearer token is UNAUTHENTICATED. A request larger than max_message_bytes is refused by
// gRPC with RESOURCE_EXHAUSTED before it is parsed. No exception leaves a handler.
//
// Threading: the grpc++ synchronous API. Every RPC here blocks (a model Run takes milliseconds
// of CPU, a load seconds), and the sync server runs each call on a thread of its own bounded
// pool, which is exactly the model; the callback API would need a second executor to keep
// blocking work off gRPC's event-engine threads. `threads` bounds the calls served at once
// (gRPC answers calls beyond it with RESOURCE_EXHAUSTED).
//
// Ownership: the server borrows the InferenceService (and through it the manager), which must
// outlive it. Thread-safety: every method may be called from any thread; Shutdown and the
// destructor must not run concurrently with each other.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "zerodet/core/status.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {

struct GrpcServerOptions {
  // host:port to listen on; port 0 picks a free port (see GrpcServer::port()). Loopback unless
  // told otherwise.
  std::string address = "127.0.0.1:8001";
  // Most calls served at once (1..1024).
  int threads = 16;
  // Largest request message accepted (1 KiB..1 GiB); larger ones are RESOURCE_EXHAUSTED.
  uint64_t max_message_bytes = uint64_t{64} << 20;
  // When set, RepositoryModelLoad / RepositoryModelUnload (and shared-memory registration, once
  // it exists) need the metadata "authorization: Bearer <token>".
  std::string token;
  // TLS: both paths (PEM) or neither (plaintext).
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
};

class GrpcServer {
 public:
  // Listens on options.address and starts serving. Errors: kInvalidArgument for options out of
  // range (threads, max_message_bytes, only one of the TLS paths); the TLS files' read errors;
  // kUnavailable when the address cannot be listened on (in use, not an address of this host).
  static Result<std::unique_ptr<GrpcServer>> Start(InferenceService& service,
                                                   GrpcServerOptions options);
  // Shutdown(0) if it has not run.
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The port listened on (the one picked when the address asked for port 0).
  int port() const;
  // Calls being served now (for drain logging and tests).
  int in_flight() const;

  // Stops accepting calls, lets calls in flight finish for up to `grace`, then cancels the rest
  // (their clients get CANCELLED; a handler in the middle of a model Run finishes that Run
  // before this returns). Returns when every handler has returned. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  struct Impl;

 private:
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zerodet::server
