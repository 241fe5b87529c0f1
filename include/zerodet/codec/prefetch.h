// ImagePrefetcher: reads and decodes a list of image files on a background thread, a bounded
// number of files ahead of the consumer, so that decoding file N+1 overlaps what the consumer
// does with file N (inference). Results come back in input order, errors included.
//
// Memory is bounded: at most `depth` decoded images wait for the consumer, plus the one being
// decoded. When no thread can be created the prefetcher decodes on the consumer's thread
// instead (same results, no overlap) and says so in the log.
//
// Thread-safety: one consumer thread calls Next(); the destructor stops and joins the decoder.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/status.h"

namespace zerodet {

class ImagePrefetcher {
 public:
  struct Item {
    std::filesystem::path path;
    Result<DecodedImage> image = InternalError("not decoded");
    double decode_ms = 0;  // read + decode, on whichever thread did it
  };

  // Starts decoding `files` in order. depth 0 decodes on the consumer's thread in Next().
  ImagePrefetcher(std::vector<std::filesystem::path> files, DecodeOptions options,
                  size_t depth = 1);
  ~ImagePrefetcher();
  ImagePrefetcher(const ImagePrefetcher&) = delete;
  ImagePrefetcher& operator=(const ImagePrefetcher&) = delete;

  // The next file's result, in input order; nullopt after the last one.
  std::optional<Item> Next();

  // Whether decoding runs on a background thread.
  bool overlapped() const { return thread_.joinable(); }

 private:
  Item Decode(size_t index) const;
  void DecodeLoop();

  const std::vector<std::filesystem::path> files_;
  const DecodeOptions options_;
  const size_t depth_;
  size_t next_ = 0;  // the next index Next() returns

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Item> ready_;  // decoded, in order, at most depth_
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace zerodet
