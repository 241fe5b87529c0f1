// The control socket of a running pipeline: which model each source's frames go to, and a switch
// to another model while the pipeline runs (the production-line case: a product change).
//
// Only models of the pipeline's repository switch (entries with `model: NAME[:VERSION]`). A
// switch has two phases: every worker of the entry loads the new model in the background while
// it keeps serving the current one; once all of them have it ready, they take the source's next
// frames with it. If any worker cannot load it, none switches and the request fails with that
// worker's error. Frames are never lost or processed twice by a switch: the workers stay in
// their work group on the source's ring, and each result line names the model and version that
// produced it. A worker restarted later starts with the switched model.
//
// The socket accepts connections from the pipeline's own user (and root) only, is created with
// mode 0600 and is removed when the pipeline ends. One request per connection: a JSON line in,
// a JSON line out (internal format, see control_protocol.h).
//
// Thread-safety: the functions below are safe to call from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"

namespace zerodet::pipeline {

// The control socket of the pipeline run from `config_path` when its config does not name one:
// "$XDG_RUNTIME_DIR/zerodet-pipeline-<hash>.sock" (XDG_RUNTIME_DIR when set to an absolute path,
// else /tmp, with the user id in the name), where <hash> identifies the config file's absolute
// path, so that `zerodet pipeline switch CONFIG ...` finds the pipeline running CONFIG.
std::string DefaultControlSocket(const std::filesystem::path& config_path);

// The model that frames of `source` go to in the model entry `entry`.
struct ModelAssignment {
  std::string entry;        // the models[] entry (its work group)
  std::string source;       // a source it reads
  std::string model;        // NAME[:VERSION] of the repository, or the model file of a file entry
  bool switchable = false;  // a repository model
  bool operator==(const ModelAssignment&) const = default;
};

struct SwitchRequest {
  std::string source;
  std::string model;  // NAME[:VERSION]
  // The entry whose model changes; empty: the one repository entry that reads `source`.
  std::string entry;
};

// Switches a source's model on the pipeline listening on `socket` and waits for the outcome.
// Returns the new assignment. Errors: kNotFound (no pipeline there, unknown source or entry, a
// model or version the repository does not serve); kInvalidArgument (an entry that runs a model
// file, several entries reading the source and none named, a malformed reference);
// kFailedPrecondition (a switch of that source in progress); a worker's load error (kCorruptData
// for a broken model file...); kPermissionDenied when the socket belongs to another user;
// kDeadlineExceeded when `deadline` passes (the switch may still complete).
Result<ModelAssignment> SwitchModel(const std::string& socket, const SwitchRequest& request,
                                    Deadline deadline);

// Every (entry, source) pair of the pipeline with its current model. Errors: as SwitchModel's
// connection errors.
Result<std::vector<ModelAssignment>> QueryModels(const std::string& socket, Deadline deadline);

}  // namespace zerodet::pipeline
