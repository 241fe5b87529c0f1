// The pipeline's child processes (internal): the ingest of one source and a worker of one model.
// Each runs in a forked child and returns its exit code. They report to the supervisor through
// a pipe with the messages of protocol.h:
//   ingest -> supervisor:  READY once the ring exists, STATS before a clean exit, ERROR before
//                          exiting with kExitFatal.
//   worker -> supervisor:  BEGIN when it takes a frame, RESULT when done with it, ERROR before
//                          exiting with kExitFatal, PREPARED to answer a PREPARE.
//   supervisor -> worker:  PREPARE and COMMIT (a model switch), on a second channel; only
//                          workers of repository models have one.
#pragma once

#include <string>
#include <vector>

#include "zerodet/pipeline/config.h"

namespace zerodet::pipeline::detail {

// A child that exits with this code failed in a way a restart cannot fix (bad model or source).
inline constexpr int kExitFatal = 3;
// A child that exits with this code wants to be restarted (e.g. its stream dropped).
inline constexpr int kExitRestart = 4;

struct IngestArgs {
  SourceConfig source;
  std::string ring_name;
  int expected_readers = 0;   // wait for this many readers before the first frame...
  int attach_timeout_ms = 0;  // ...at most this long (0: do not wait, e.g. after a restart)
  int fd = -1;                // message pipe
  bool restarted = false;     // a previous ingest of this source died or lost its stream
};
int RunIngest(const IngestArgs& args);

struct WorkerSource {
  uint32_t index = 0;  // in PipelineConfig::sources; what BEGIN and RESULT name
  std::string name;
  std::string ring_name;
  std::string model;  // repository models: NAME[:VERSION] this source's frames go to now
};

struct WorkerArgs {
  ModelConfig model;
  RepositoryConfig repository;  // path empty: model.path is a file
  int worker = 0;
  std::vector<WorkerSource> sources;
  std::string annotated_dir;  // empty: no annotated JPEGs
  int fd = -1;
  int control_fd = -1;  // non-blocking; repository models only (-1 otherwise)
};
int RunWorker(const WorkerArgs& args);

}  // namespace zerodet::pipeline::detail
