// Image-folder replay: the JPEG/PNG/BMP files of a folder in name order, decoded with the codec
// module (same pixels as the rest of zerodet). One bad file never stops the replay: it is
// reported (spdlog warning) and skipped, when the folder is scanned and when it is decoded.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;

void ReportSkipped(const std::string& folder, const Status& why) {
  spdlog::warn("image folder {}: skipping {}", folder, why.ToString());
}

class ImageFolderSource final : public FrameSource {
 public:
  ImageFolderSource(std::string folder, std::vector<fs::path> files, size_t max_frame_bytes,
                    bool loop)
      : folder_(std::move(folder)),
        files_(std::move(files)),
        max_frame_bytes_(max_frame_bytes),
        loop_(loop) {}

  size_t max_frame_bytes() const override { return max_frame_bytes_; }
  double native_fps() const override { return 0; }
  int width() const override { return current_.image.width(); }
  int height() const override { return current_.image.height(); }

  // The next image that decodes. A file that no longer does (removed, rewritten, unreadable
  // since the scan) is reported and skipped; only a whole pass without one image is an error.
  Result<bool> Advance() override {
    Status last_failure;
    for (size_t failures = 0; failures < files_.size();) {
      if (next_ == files_.size()) {
        if (!loop_) return false;
        next_ = 0;
      }
      const Status loaded = Load(files_[next_++]);
      if (loaded.ok()) return true;
      ReportSkipped(folder_, loaded);
      last_failure = loaded;
      ++failures;
    }
    return Status(last_failure.code(),
                  "image folder " + folder_ + ": none of its " + std::to_string(files_.size()) +
                      " images decodes any more (last: " + last_failure.message() + ")");
  }

  Status WriteRgb(std::span<uint8_t> dst) override {
    const size_t row = static_cast<size_t>(current_.image.width()) * 3;
    const size_t needed = row * static_cast<size_t>(current_.image.height());
    if (dst.size() < needed) {
      return InvalidArgumentError("image of " + std::to_string(needed) + " bytes does not fit " +
                                  std::to_string(dst.size()) + " bytes");
    }
    for (int y = 0; y < current_.image.height(); ++y) {
      std::memcpy(dst.data() + static_cast<size_t>(y) * row,
                  current_.image.data() + static_cast<size_t>(y) * current_.image.stride(), row);
    }
    return Status::Ok();
  }

 private:
  Status Load(const fs::path& file) {
    auto decoded = DecodeImageFile(file);
    if (!decoded.ok()) return decoded.status();
    if (decoded->image.size_bytes() > max_frame_bytes_) {
      return CorruptDataError(file.string() + " changed size since the folder was scanned (now " +
                              std::to_string(decoded->image.width()) + "x" +
                              std::to_string(decoded->image.height()) + ")");
    }
    current_ = std::move(decoded).value();
    return Status::Ok();
  }

  std::string folder_;
  std::vector<fs::path> files_;
  size_t max_frame_bytes_;
  bool loop_;
  size_t next_ = 0;
  DecodedImage current_;
};

// The RGB8 bytes the image in `file` decodes to, from its header.
Result<size_t> FrameBytes(const fs::path& file) {
  ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(file));
  ZD_ASSIGN_OR_RETURN(ImageInfo info, ReadImageInfo(bytes, file.string()));
  // One header claiming a huge image must not size every slot of the ring.
  ZD_RETURN_IF_ERROR(CheckFrameSize(info.width, info.height, file.string()));
  // EXIF orientation may swap width and height when decoding; the byte count stays the same.
  return static_cast<size_t>(info.width) * static_cast<size_t>(info.height) * 3;
}

}  // namespace

Result<std::unique_ptr<FrameSource>> OpenImageFolderSource(const std::string& folder, bool loop) {
  auto listed = ListDirectory(folder);
  if (!listed.ok()) return listed.status().WithContext("image folder");
  std::vector<fs::path> files;  // in name order: ListDirectory sorts
  size_t max_frame_bytes = 0;
  size_t skipped = 0;
  Status first_skipped;
  for (const DirectoryEntry& entry : *listed) {
    // Only names that say "image" count; anything else in the folder is not ours to judge.
    if (!HasImageFileExtension(entry.path)) continue;
    Status why;
    if (entry.kind == DirectoryEntry::Kind::kError) {
      why = entry.error;  // a symlink loop, a dangling link, no permission
    } else if (entry.kind != DirectoryEntry::Kind::kRegular) {
      why = InvalidArgumentError(entry.path.string() + ": not a regular file");
    } else {
      auto bytes = FrameBytes(entry.path);
      if (bytes.ok()) {
        files.push_back(entry.path);
        max_frame_bytes = std::max(max_frame_bytes, *bytes);
        continue;
      }
      why = bytes.status();
    }
    ReportSkipped(folder, why);
    if (skipped++ == 0) first_skipped = why;
  }
  if (files.empty() && skipped > 0) {
    return Status(first_skipped.code(), "image folder " + folder + " has no readable image (" +
                                            std::to_string(skipped) +
                                            " skipped; first: " + first_skipped.message() + ")");
  }
  if (files.empty()) {
    return InvalidArgumentError("image folder " + folder +
                                " has no .jpg, .jpeg, .png or .bmp files");
  }
  return std::unique_ptr<FrameSource>(
      new ImageFolderSource(folder, std::move(files), max_frame_bytes, loop));
}

}  // namespace zerodet::pipeline
