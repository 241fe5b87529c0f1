#include "zerodet/codec/prefetch.h"

#include <spdlog/spdlog.h>

#include <system_error>

#include "zerodet/core/stopwatch.h"

namespace zerodet {

ImagePrefetcher::ImagePrefetcher(std::vector<std::filesystem::path> files, DecodeOptions options,
                                 size_t depth)
    : files_(std::move(files)), options_(options), depth_(depth) {
  if (depth_ == 0 || files_.size() < 2) return;
  try {
    thread_ = std::thread([this] { DecodeLoop(); });
  } catch (const std::system_error& e) {
    spdlog::warn("cannot start the image decoding thread ({}); decoding in line", e.what());
  }
}

ImagePrefetcher::~ImagePrefetcher() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

ImagePrefetcher::Item ImagePrefetcher::Decode(size_t index) const {
  Item item;
  item.path = files_[index];
  Stopwatch watch;
  item.image = DecodeImageFile(item.path, options_);
  item.decode_ms = watch.ElapsedMs();
  return item;
}

void ImagePrefetcher::DecodeLoop() {
  for (size_t index = 0; index < files_.size(); ++index) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
      if (stop_) return;
    }
    Item item = Decode(index);  // outside the lock: this is the work that overlaps
    {
      std::lock_guard lock(mutex_);
      ready_.push_back(std::move(item));
    }
    changed_.notify_all();
  }
}

std::optional<ImagePrefetcher::Item> ImagePrefetcher::Next() {
  if (next_ >= files_.size()) return std::nullopt;
  if (!thread_.joinable()) return Decode(next_++);
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty(); });
  Item item = std::move(ready_.front());
  ready_.pop_front();
  ++next_;
  lock.unlock();
  changed_.notify_all();
  return item;
}

}  // namespace zerodet
