// Frame sources on real media: a video made with ffmpeg from ../shared/images, and the image
// folder itself.
#include "zerodet/pipeline/source.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "test_media.h"
#include "test_support.h"
#include "zerodet/codec/decode.h"

namespace zerodet::pipeline {
namespace {

class VideoSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new zerodet::testing::TempDir("video-source");
    dir_ = new std::filesystem::path(temp_->path());
    clip_ = new std::filesystem::path(testing::MakeClip(*dir_));
  }
  static void TearDownTestSuite() {
    delete clip_;
    delete dir_;
    delete temp_;
  }
  static zerodet::testing::TempDir* temp_;
  static std::filesystem::path* dir_;
  static std::filesystem::path* clip_;
};
zerodet::testing::TempDir* VideoSourceTest::temp_ = nullptr;
std::filesystem::path* VideoSourceTest::dir_ = nullptr;
std::filesystem::path* VideoSourceTest::clip_ = nullptr;

double MeanAbsDiff(const uint8_t* a, const uint8_t* b, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::abs(int{a[i]} - int{b[i]});
  return sum / static_cast<double>(n);
}

TEST_F(VideoSourceTest, DecodesEveryFrameAsRgbOfTheStreamSize) {
  ASSERT_FALSE(clip_->empty()) << "ffmpeg could not make the test clip (is ffmpeg installed?)";
  auto source = OpenVideoSource(clip_->string());
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  EXPECT_EQ((*source)->max_frame_bytes(), 640u * 480u * 3u);
  EXPECT_NEAR((*source)->native_fps(), 2.0, 1e-6);
  std::vector<std::vector<uint8_t>> frames;
  for (;;) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    EXPECT_EQ((*source)->width(), 640);
    EXPECT_EQ((*source)->height(), 480);
    std::vector<uint8_t> rgb(640 * 480 * 3);
    ASSERT_TRUE((*source)->WriteRgb(rgb).ok());
    frames.push_back(std::move(rgb));
  }
  ASSERT_EQ(frames.size(), testing::SharedPhotos().size());
  // The frames are the photos in name order: frame 2 is dog.jpg (768x576 -> 640x480, same
  // aspect ratio, no padding). Compare with the photo scaled down by sampling.
  auto dog = DecodeImageFile(ZERODET_SHARED_DIR "/images/dog.jpg");
  ASSERT_TRUE(dog.ok());
  ASSERT_EQ(dog->image.width(), 768);
  std::vector<uint8_t> sampled(640 * 480 * 3);
  for (int y = 0; y < 480; ++y) {
    for (int x = 0; x < 640; ++x) {
      const uint8_t* p = dog->image.data() +
                         static_cast<size_t>(y * 576 / 480) * dog->image.stride() +
                         static_cast<size_t>(x * 768 / 640) * 3;
      std::memcpy(&sampled[(static_cast<size_t>(y) * 640 + static_cast<size_t>(x)) * 3], p, 3);
    }
  }
  // Lossy video coding and a different scaler: close, but not equal. Another frame is far off.
  EXPECT_LT(MeanAbsDiff(frames[1].data(), sampled.data(), sampled.size()), 20.0);
  EXPECT_GT(MeanAbsDiff(frames[0].data(), sampled.data(), sampled.size()), 40.0);
}

TEST_F(VideoSourceTest, LoopingStartsOverAtTheEnd) {
  ASSERT_FALSE(clip_->empty());
  VideoOptions looping;
  looping.loop = true;
  auto source = OpenVideoSource(clip_->string(), looping);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  const size_t photos = testing::SharedPhotos().size();
  std::vector<uint8_t> first(640 * 480 * 3), again(640 * 480 * 3);
  for (size_t i = 0; i < photos + 1; ++i) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok() && *more) << "frame " << i;
    if (i == 0) {
      ASSERT_TRUE((*source)->WriteRgb(first).ok());
    }
    if (i == photos) {
      ASSERT_TRUE((*source)->WriteRgb(again).ok());
    }
  }
  EXPECT_EQ(first, again);
}

TEST_F(VideoSourceTest, BadInputIsAnError) {
  auto missing = OpenVideoSource((*dir_ / "missing.mp4").string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing.mp4"), std::string::npos);
  const auto text = *dir_ / "notes.mp4";
  {
    std::ofstream out(text);
    out << "this is not a video\n";
  }
  auto garbage = OpenVideoSource(text.string());
  EXPECT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("notes.mp4"), std::string::npos);
  auto source = OpenVideoSource(clip_->string());
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(*(*source)->Advance());
  std::vector<uint8_t> small(100);
  EXPECT_EQ((*source)->WriteRgb(small).code(), StatusCode::kInvalidArgument);
}

TEST_F(VideoSourceTest, AFifoDeviceOrDirectoryIsRefusedWithoutBlocking) {
  // libavformat opens a local path for reading: on a FIFO without a writer that never returns.
  const std::string fifo = (*dir_ / "camera.mp4").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto from_fifo = OpenVideoSource(fifo);
  EXPECT_EQ(from_fifo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_fifo.status().message().find("camera.mp4: is a FIFO"), std::string::npos)
      << from_fifo.status().ToString();
  auto from_dir = OpenVideoSource(dir_->string());
  EXPECT_EQ(from_dir.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_dir.status().message().find("directory"), std::string::npos)
      << from_dir.status().ToString();
  auto from_device = OpenVideoSource("/dev/zero");
  EXPECT_EQ(from_device.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_device.status().message().find("character device"), std::string::npos)
      << from_device.status().ToString();
}

TEST_F(VideoSourceTest, AStreamOfFramesBeyondThePixelLimitIsRefused) {
  // One black 8200x8200 frame (67 Mpx, over the 64 Mpx limit): without a limit, the ring of
  // such a source would take 8 slots of 200 MB from /dev/shm because a header said so.
  const std::string big = (*dir_ / "big.mkv").string();
  const std::string command =
      "ffmpeg -nostdin -y -loglevel error -f lavfi -i color=c=black:s=8200x8200:d=0.04 "
      "-frames:v 1 -c:v ffv1 -pix_fmt gray '" +
      big + "'";
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto source = OpenVideoSource(big);
  EXPECT_EQ(source.status().code(), StatusCode::kResourceExhausted) << source.status().ToString();
  EXPECT_NE(source.status().message().find("8200x8200"), std::string::npos);
}

TEST(VideoSourceStallTest, AStreamThatNeverAnswersTimesOutOrIsInterrupted) {
  testing::SilentServer server;
  ASSERT_GT(server.port(), 0);
  const std::string url = "rtsp://127.0.0.1:" + std::to_string(server.port()) + "/cam";
  VideoOptions options;
  options.open_timeout_ms = 300;
  auto timed_out = OpenVideoSource(url, options);
  EXPECT_EQ(timed_out.status().code(), StatusCode::kUnavailable) << timed_out.status().ToString();
  EXPECT_NE(timed_out.status().message().find("no answer within 300 ms"), std::string::npos)
      << timed_out.status().ToString();
  EXPECT_NE(timed_out.status().message().find(url), std::string::npos);

  // The pipeline's stop request ends the wait too, whatever the timeout.
  options.open_timeout_ms = 0;
  std::atomic<int> polls{0};
  options.interrupted = [&] { return ++polls > 3; };
  auto interrupted = OpenVideoSource(url, options);
  EXPECT_EQ(interrupted.status().code(), StatusCode::kUnavailable)
      << interrupted.status().ToString();
  EXPECT_NE(interrupted.status().message().find("interrupted"), std::string::npos)
      << interrupted.status().ToString();
}

TEST(ImageFolderSourceTest, ReplaysThePhotosInNameOrderWithTheCodecsPixels) {
  auto source = OpenImageFolderSource(ZERODET_SHARED_DIR "/images", /*loop=*/false);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  size_t largest = 0;
  for (const auto& photo : testing::SharedPhotos()) {
    auto decoded = DecodeImageFile(photo);
    ASSERT_TRUE(decoded.ok());
    largest = std::max(largest, decoded->image.size_bytes());
  }
  EXPECT_EQ((*source)->max_frame_bytes(), largest);
  std::vector<uint8_t> slot(largest);
  for (const auto& photo : testing::SharedPhotos()) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok() && *more) << photo;
    auto decoded = DecodeImageFile(photo);
    ASSERT_TRUE(decoded.ok());
    ASSERT_EQ((*source)->width(), decoded->image.width()) << photo;
    ASSERT_EQ((*source)->height(), decoded->image.height()) << photo;
    ASSERT_TRUE((*source)->WriteRgb(slot).ok());
    EXPECT_EQ(std::memcmp(slot.data(), decoded->image.data(), decoded->image.size_bytes()), 0)
        << photo;
  }
  auto end = (*source)->Advance();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

// A PNG that is only a valid header (signature and IHDR) claiming width x height RGB pixels.
std::string PngHeader(uint32_t width, uint32_t height) {
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  const std::string chunk = "IHDR" + be32(width) + be32(height) + std::string("\x08\x02\0\0\0", 5);
  uint32_t crc = 0xffffffffu;  // CRC-32 of the chunk type and data, as PNG defines it
  for (const char c : chunk) {
    crc ^= static_cast<uint8_t>(c);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + chunk + be32(~crc);
}

// Copies a shared photo into `dir` under `name`.
void CopyPhoto(const std::string& photo, const std::filesystem::path& dir,
               const std::string& name) {
  std::filesystem::copy_file(std::filesystem::path(ZERODET_SHARED_DIR "/images") / photo,
                             dir / name);
}

TEST(ImageFolderSourceTest, AnUnusableImageIsReportedAndSkipped) {
  // Each of these used to stop the whole source: an unreadable header at the scan, and a
  // symlink loop as the last entry threw out of std::filesystem's iterator.
  const zerodet::testing::TempDir temp("image-folder-skip");
  const std::filesystem::path& dir = temp.path();
  CopyPhoto("bus.jpg", dir, "a-bus.jpg");
  std::ofstream(dir / "b-broken.jpg") << "not a jpeg";
  std::filesystem::create_symlink(dir / "c-missing.png", dir / "c-dangling.png");
  std::filesystem::create_directory(dir / "d-folder.jpg");
  ASSERT_EQ(::mkfifo((dir / "e-fifo.bmp").c_str(), 0600), 0);
  CopyPhoto("dog.jpg", dir, "f-dog.JPG");
  std::ofstream(dir / "g-huge.png") << PngHeader(20000, 20000);  // 400 Mpx, by its header
  std::ofstream(dir / "notes.txt") << "not an image, and not reported";
  std::filesystem::create_symlink(dir / "z-loop.jpg", dir / "z-loop.jpg");  // the last entry

  zerodet::testing::CapturedLog log;
  auto source = OpenImageFolderSource(dir.string(), /*loop=*/false);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  std::vector<int> widths;
  for (;;) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    widths.push_back((*source)->width());
  }
  EXPECT_EQ(widths, (std::vector<int>{810, 768}));  // bus, dog
  EXPECT_EQ((*source)->max_frame_bytes(), 810u * 1080u * 3u);
  const std::string reported = log.Text();
  for (const char* name : {"b-broken.jpg", "c-dangling.png", "d-folder.jpg", "e-fifo.bmp",
                           "g-huge.png", "z-loop.jpg"}) {
    EXPECT_NE(reported.find(name), std::string::npos) << name << " not reported in:\n" << reported;
  }
  EXPECT_NE(reported.find("symlink loop"), std::string::npos) << reported;
  EXPECT_NE(reported.find("20000x20000 exceed the limit"), std::string::npos) << reported;
  EXPECT_EQ(reported.find("notes.txt"), std::string::npos) << reported;
}

TEST(ImageFolderSourceTest, AnImageThatBreaksAfterTheScanIsSkippedWhenItsTurnComes) {
  const zerodet::testing::TempDir temp("image-folder-later");
  const std::filesystem::path& dir = temp.path();
  CopyPhoto("bus.jpg", dir, "1.jpg");
  CopyPhoto("dog.jpg", dir, "2.jpg");
  auto source = OpenImageFolderSource(dir.string(), /*loop=*/true);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  std::filesystem::remove(dir / "2.jpg");
  zerodet::testing::CapturedLog log;
  for (int i = 0; i < 3; ++i) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok() && *more) << "frame " << i;
    EXPECT_EQ((*source)->width(), 810) << "frame " << i;  // bus.jpg every time
  }
  EXPECT_NE(log.Text().find("2.jpg"), std::string::npos) << log.Text();
  // When no image of the folder decodes any more, a looping replay ends with an error.
  std::filesystem::remove(dir / "1.jpg");
  auto none = (*source)->Advance();
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("none of its 2 images"), std::string::npos)
      << none.status().ToString();
}

TEST(ImageFolderSourceTest, MissingEmptyAndCorruptFoldersAreErrors) {
  EXPECT_EQ(OpenImageFolderSource("/nonexistent/zerodet", false).status().code(),
            StatusCode::kNotFound);
  const zerodet::testing::TempDir temp("image-folder");
  const std::filesystem::path& dir = temp.path();
  auto empty = OpenImageFolderSource(dir.string(), false);
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find(dir.string()), std::string::npos);
  {
    std::ofstream out(dir / "broken.jpg");
    out << "not a jpeg";
  }
  auto corrupt = OpenImageFolderSource(dir.string(), false);
  EXPECT_EQ(corrupt.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(corrupt.status().message().find("no readable image"), std::string::npos)
      << corrupt.status().ToString();
  EXPECT_NE(corrupt.status().message().find("broken.jpg"), std::string::npos);
  // A file given as the folder.
  auto file = OpenImageFolderSource((dir / "broken.jpg").string(), false);
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument) << file.status().ToString();
}

}  // namespace
}  // namespace zerodet::pipeline
