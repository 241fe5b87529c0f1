// Pipeline configuration: the sources (one ingest process each), the models (N worker
// processes each) and where results go, as read from a YAML file.
//
//   sources:
//     - name: gate                 # [A-Za-z0-9_.-], unique
//       type: video                # video (file or URL libavformat opens) | images (a folder)
//                                  # | v4l2 (a camera device such as /dev/video0)
//       path: clip.mp4             # relative paths are relative to the YAML file
//       fps: 4                     # pacing; video: default the stream's rate; images: required;
//                                  # v4l2: the rate asked of the camera, which paces itself
//       width: 1280                # v4l2 only: frame size asked of the camera (it may round)
//       height: 720
//       pixel_format: YUYV         # v4l2 only: RGB3 BGR3 YUYV UYVY GREY MJPG JPEG (default:
//                                  # the first of those the camera offers)
//       loop: false                # start over at the end instead of finishing
//       ring_slots: 8              # frames the ring holds
//       overflow: overwrite_oldest # or drop_newest (the ingest never waits for workers)
//   repository:                    # optional: models named from a model repository
//     path: ../models-repo         # REPO/<model>/<version>/model.onnx, as Triton's (models/)
//     max_models: 2                # per worker process: versions kept loaded (0: no bound)
//     max_bytes: 0                 # per worker process: bytes charged (0: no bound)
//     graph_cache: cache           # optimized-graph cache directory (optional)
//   models:
//     - name: yolov8n              # also the work group name on the rings
//       path: ../models/yolov8n.onnx  # an ONNX file, or (with `repository`) instead:
//       model: yolov8n:2           # NAME[:VERSION] of the repository, resolved by each worker's
//                                  # model manager (hot swap, versions, traffic split); `name`
//                                  # defaults to NAME; switchable while running (below)
//       workers: 2                 # processes, each one ONNX Runtime session
//       threads: 1                 # intra-op threads per worker (a repository model's own
//                                  # config may give it threads of its own)
//       sources: [gate]            # default: every source (fan-out: each model sees each frame)
//       conf: 0.25
//       iou: 0.45
//   output:
//     results: "-"                 # JSON lines: "-" for stdout, or a file path
//     results_ring: gate-results   # also publish each line into this ring (optional) for
//                                  # local consumers: RingReader, FrameFormat::kEncoded. The
//                                  # name is machine-wide (/dev/shm): see pipeline.h
//     annotated_dir: annotated     # also write <source>-<model>-<sequence>.jpg with the boxes
//                                  # drawn (optional; costs an encode per frame)
//     mqtt:                        # also publish each line to an MQTT broker (optional), on
//       host: broker.example       # <topic_prefix>/<source>, QoS 1 (pipeline/mqtt_publisher.h)
//       port: 1883
//       topic_prefix: zerodet/line1
//       qos: 1
//       client_id: line1           # default: zerodet-<pid>
//       username: line1            # optional, with password_file (its first line)
//       password_file: /run/secrets/mqtt
//       max_queue: 10000           # results waiting for the broker; beyond: dropped, counted
//       keepalive: 30
//   supervision:
//     restart_backoff_ms: 200
//     max_restarts: 20             # per worker or ingest slot; then the pipeline fails
//   control:
//     socket: /run/line1.sock      # the control socket (`zerodet pipeline switch`); "" for
//                                  # none; default: DefaultControlSocket (pipeline/control.h)
//
// Thread-safe: plain values and a pure function.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/pipeline/mqtt_publisher.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline {

// Limits ParsePipelineConfig checks (besides each key's own range, named in its errors).
inline constexpr double kMinFps = 0.001;  // a frame every ~17 minutes; 0 means "the stream's"
inline constexpr double kMaxFps = 1000;
inline constexpr int kMaxWorkersPerModel = 32;
// Ingest and worker processes of one pipeline in all. Each source's workers must also fit its
// ring: at most ring::kMaxReaders workers and ring::kMaxGroups models per source.
inline constexpr int kMaxPipelineProcesses = 256;
// Largest config file LoadPipelineConfig reads.
inline constexpr uint64_t kMaxConfigBytes = uint64_t{1} << 20;

enum class SourceType { kVideo, kImageFolder, kV4l2 };

struct SourceConfig {
  std::string name;
  SourceType type = SourceType::kVideo;
  std::string path;  // file, folder or URL; already resolved against the config's folder
  double fps = 0;    // 0: the stream's own rate (video only)
  bool loop = false;
  int width = 0;  // v4l2: requested frame size, 0 = the camera's current
  int height = 0;
  std::string pixel_format;  // v4l2: a fourcc such as "YUYV", empty = automatic
  int ring_slots = 8;
  ring::OverflowPolicy overflow = ring::OverflowPolicy::kOverwriteOldest;
};

struct ModelConfig {
  std::string name;
  std::filesystem::path path;  // the model file; empty for a repository model
  std::string reference;       // NAME[:VERSION] of a repository model; empty for a file
  int workers = 1;
  int threads = 1;
  std::vector<std::string> sources;  // names; filled with every source when not given
  float conf = 0.25f;
  float iou = 0.45f;
};

struct RepositoryConfig {
  std::filesystem::path path;         // empty: no repository
  uint64_t max_models = 0;            // per worker process; 0: unbounded
  uint64_t max_bytes = 0;             // per worker process; 0: unbounded
  std::filesystem::path graph_cache;  // empty: none
};

struct PipelineConfig {
  RepositoryConfig repository;
  std::vector<SourceConfig> sources;
  std::vector<ModelConfig> models;
  std::string results = "-";
  std::string results_ring;         // empty: none
  std::string annotated_dir;        // empty: none
  std::optional<MqttOptions> mqtt;  // nullopt: results go to no broker
  int restart_backoff_ms = 200;
  int max_restarts = 20;
  // Where the supervisor listens for control requests (pipeline/control.h); nullopt or empty:
  // nowhere. nullopt when the text does not set control.socket; LoadPipelineConfig then fills
  // in DefaultControlSocket(path).
  std::optional<std::string> control_socket;
};

// Parses and validates YAML text. `base_dir` resolves relative paths; `origin` (the file name)
// appears in errors. Never throws, whatever the text. Errors: kInvalidArgument naming the key
// and the value that is wrong (unknown keys, keys given twice and complex keys included, so
// typos do not pass silently), or the limits above.
Result<PipelineConfig> ParsePipelineConfig(std::string_view yaml,
                                           const std::filesystem::path& base_dir,
                                           std::string_view origin);

// Reads and parses a YAML file (at most kMaxConfigBytes) without blocking: a FIFO, device or
// directory is refused. Without control.socket in the file, the control socket is
// DefaultControlSocket(path). Errors: as core's ReadFileText for the file (kNotFound,
// kPermissionDenied, kInvalidArgument for a file that is not regular, kResourceExhausted when
// too large), then as above.
Result<PipelineConfig> LoadPipelineConfig(const std::filesystem::path& path);

}  // namespace zerodet::pipeline
