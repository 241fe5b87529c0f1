// The pipeline's child processes (internal): the ingest of one source and a worker of one model.
// Each runs in a forked child and returns its exit code. They talk to the supervisor through
// a pipe, one line per message, each written with a single write():
//   ingest -> supervisor:  "READY\n" once the ring exists, "STATS <published> <dropped>
//                          <overwritten>\n" before a clean exit, "ERROR <code> <message>\n"
//                          before exiting with kExitFatal.
//   worker -> supervisor:  "BEGIN <source index> <sequence>\n" when it takes a frame,
//                          "RESULT <json>\n" when done with it, "ERROR <code> <message>\n"
//                          before exiting with kExitFatal.
// <code> is the StatusCode's number, so the supervisor reports the child's own error code.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zerodet/pipeline/config.h"

namespace zerodet::pipeline::detail {

// A child that exits with this code failed in a way a restart cannot fix (bad model or source).
inline constexpr int kExitFatal = 3;
// A child that exits with this code wants to be restarted (e.g. its stream dropped).
inline constexpr int kExitRestart = 4;

// Writes one message line with a single write() (atomic on a pipe up to PIPE_BUF; longer
// result lines are fine too since each worker has its own pipe).
void SendLine(int fd, const std::string& line);

// The "ERROR ..." line for `status` (not OK), and the status back from the text after "ERROR ".
std::string ErrorLine(const Status& status);
Status ParseErrorLine(std::string_view text);

struct IngestArgs {
  SourceConfig source;
  std::string ring_name;
  int expected_readers = 0;   // wait for this many readers before the first frame...
  int attach_timeout_ms = 0;  // ...at most this long (0: do not wait, e.g. after a restart)
  int fd = -1;                // message pipe
  bool restarted = false;     // a previous ingest of this source died or lost its stream
};
int RunIngest(const IngestArgs& args);

struct WorkerArgs {
  ModelConfig model;
  int worker = 0;
  std::vector<std::pair<std::string, std::string>> sources;  // (source name, ring name)
  std::string annotated_dir;                                 // empty: no annotated JPEGs
  int fd = -1;
};
int RunWorker(const WorkerArgs& args);

}  // namespace zerodet::pipeline::detail
