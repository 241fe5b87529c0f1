#include "loaded_version.h"

#include <algorithm>
#include <utility>

#include "zerodet/models/memory_probe.h"

namespace zerodet::models_internal {

LoadedVersion::LoadedVersion(std::string name_in, int64_t version_in, ModelConfig config_in,
                             LoadedModel model_in, std::shared_ptr<Ledger> ledger)
    : name(std::move(name_in)),
      version(version_in),
      config(std::move(config_in)),
      model(std::move(model_in)),
      loaded_at(MonotonicClock::now()),
      last_used_ns(MonotonicNowNs()),
      ledger_(std::move(ledger)) {
  for (const auto& instance : model.instances) free_.push_back(instance.get());
  std::lock_guard lock(ledger_->mu);
  for (const auto& [device, bytes] : model.charge) ledger_->devices[device].bytes += bytes;
  ledger_->devices[ConfigDevice(config)].models += 1;
}

LoadedVersion::~LoadedVersion() {
  // Members die after this body: the sessions are released here, so that the charge is
  // returned and the heap trimmed only once their memory is really free.
  model.instances.clear();
  ReleaseFreedMemoryToSystem();
  std::lock_guard lock(ledger_->mu);
  for (const auto& [device, bytes] : model.charge) {
    Ledger::Device& d = ledger_->devices[device];
    d.bytes -= std::min(d.bytes, bytes);
  }
  Ledger::Device& own = ledger_->devices[ConfigDevice(config)];
  own.models -= std::min<uint64_t>(own.models, 1);
  if (!draining_device_.empty()) ledger_->devices[draining_device_].draining -= 1;
  ledger_->room.notify_all();
}

Result<Detector*> LoadedVersion::Lease(Deadline deadline) {
  std::unique_lock lock(mu_);
  while (free_.empty()) {
    if (deadline.never()) {
      freed_.wait(lock);
    } else if (freed_.wait_until(lock, deadline.time_point()) == std::cv_status::timeout &&
               free_.empty()) {
      return DeadlineExceededError(name + ":" + std::to_string(version) + ": all " +
                                   std::to_string(model.instances.size()) +
                                   " instance(s) stayed busy until the deadline");
    }
  }
  Detector* instance = free_.back();
  free_.pop_back();
  ++leased_;
  return instance;
}

void LoadedVersion::Return(Detector* instance) {
  {
    std::lock_guard lock(mu_);
    free_.push_back(instance);
    --leased_;
  }
  freed_.notify_one();
}

int LoadedVersion::leased() const {
  std::lock_guard lock(mu_);
  return leased_;
}

}  // namespace zerodet::models_internal
