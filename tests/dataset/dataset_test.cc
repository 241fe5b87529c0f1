// Dataset preloader and reader on real images from ../shared, against an in-process store.
#include "zerodet/dataset/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "store_test_util.h"
#include "zerodet/codec/decode.h"

namespace zerodet::dataset {
namespace {

using store::StoreClient;
using store::StoreServer;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kShared = ZERODET_SHARED_DIR;
const fs::path kImages = kShared / "images";
const fs::path kCocoJson = kShared / "coco-val-tiny" / "instances_val2017.json";

class DatasetTest : public ::testing::Test {
 protected:
  void StartStore(uint64_t capacity) {
    socket_ = dir_.File("store.sock");
    auto server = StoreServer::Create(testing::SmallStore(socket_, capacity));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    server_->Start();
    client_ = testing::MustConnect(socket_);
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<DatasetReader> OpenReader(const std::string& name) {
    auto reader = DatasetReader::Open(client_, name);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    return reader.ok() ? std::move(*reader) : nullptr;
  }

  testing::TempDir dir_;
  std::string socket_;
  std::unique_ptr<StoreServer> server_;
  std::shared_ptr<StoreClient> client_;
};

TEST(DatasetSourceTest, ListsDirectoriesAndCocoFiles) {
  auto dir = ListDatasetImages(kImages);
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_EQ(dir->size(), 9u);
  EXPECT_EQ((*dir)[1].name, "dog.jpg");
  EXPECT_EQ((*dir)[1].path, kImages / "dog.jpg");
  auto coco = ListDatasetImages(kCocoJson);
  ASSERT_TRUE(coco.ok()) << coco.status().ToString();
  EXPECT_EQ(coco->size(), 80u);
  for (const auto& image : *coco) EXPECT_TRUE(fs::is_regular_file(image.path)) << image.path;
  // Named by the annotation's file_name, so evaluators find them.
  EXPECT_EQ((*coco)[0].name, "000000532481.jpg");
  EXPECT_EQ((*coco)[0].path.filename(), "000000532481.jpg");
}

TEST(DatasetSourceTest, BadSourcesAndLayoutsAreNamed) {
  EXPECT_EQ(ListDatasetImages("/nonexistent/dataset").status().code(), StatusCode::kNotFound);
  testing::TempDir dir;
  {
    std::ofstream(dir.File("bad.json")) << "{\"images\": 3}";
    std::ofstream(dir.File("missing.json")) << R"({"images": [{"file_name": "nope.jpg"}]})";
  }
  auto bad = ListDatasetImages(dir.File("bad.json"));
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruptData);
  auto missing = ListDatasetImages(dir.File("missing.json"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.jpg"));
  fs::create_directory(dir.File("empty"));
  EXPECT_EQ(ListDatasetImages(dir.File("empty")).status().code(), StatusCode::kInvalidArgument);

  SampleLayout layout;
  int size = 0;
  EXPECT_TRUE(ParseSampleLayout("letterbox:320", &layout, &size).ok());
  EXPECT_EQ(layout, SampleLayout::kLetterbox);
  EXPECT_EQ(size, 320);
  LetterboxStyle style = LetterboxStyle::kUltralytics;
  EXPECT_TRUE(ParseSampleLayout("letterbox-yolox:416", &layout, &size, &style).ok());
  EXPECT_EQ(style, LetterboxStyle::kYolox);
  EXPECT_EQ(size, 416);
  EXPECT_TRUE(ParseSampleLayout("rgb", &layout, &size).ok());
  EXPECT_EQ(layout, SampleLayout::kRgb8);
  for (const char* bad_layout : {"letterbox:", "letterbox:641", "letterbox:64x", "bgr", ""}) {
    EXPECT_EQ(ParseSampleLayout(bad_layout, &layout, &size).code(), StatusCode::kInvalidArgument)
        << bad_layout;
  }
}

TEST_F(DatasetTest, RgbSamplesEqualTheDecodedFiles) {
  StartStore(64 << 20);
  PreloadOptions options;
  options.dataset = "photos";
  options.jobs = 2;
  std::mutex mutex;
  size_t last_done = 0, calls = 0;
  options.progress = [&](size_t done, size_t total) {
    std::lock_guard lock(mutex);
    EXPECT_EQ(total, 9u);
    EXPECT_GT(done, last_done);
    last_done = done;
    ++calls;
  };
  auto report = PreloadDataset(*client_, kImages, options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->samples, 9u);
  EXPECT_EQ(report->decoded, 9u);
  EXPECT_EQ(calls, 9u);

  auto reader = OpenReader("photos");
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->size(), 9u);
  EXPECT_EQ(reader->layout(), SampleLayout::kRgb8);
  for (size_t i = 0; i < reader->size(); ++i) {
    const SampleInfo& info = reader->info(i);
    auto decoded = DecodeImageFile(info.path);
    ASSERT_TRUE(decoded.ok());
    auto sample = reader->Get(i);
    ASSERT_TRUE(sample.ok()) << sample.status().ToString();
    EXPECT_TRUE(sample->from_store());
    EXPECT_EQ(sample->info().dtype, DType::kUInt8);
    ASSERT_EQ(sample->info().shape,
              (std::vector<int64_t>{decoded->image.height(), decoded->image.width(), 3}));
    EXPECT_EQ(info.source_width, decoded->source_width);
    const auto row = static_cast<size_t>(decoded->image.width()) * 3;
    const auto stride = static_cast<size_t>(decoded->image.stride());
    for (size_t y = 0; y < static_cast<size_t>(decoded->image.height()); ++y) {
      ASSERT_EQ(
          std::memcmp(sample->bytes().data() + y * row, decoded->image.data() + y * stride, row), 0)
          << info.name << " row " << y;
    }
  }
  EXPECT_EQ(reader->Find("dog.jpg") < reader->size(), true);
  EXPECT_EQ(reader->Find("cat.jpg"), reader->size());
  EXPECT_EQ(reader->Get(9).status().code(), StatusCode::kInvalidArgument);

  // Preloading again decodes nothing.
  last_done = 0;
  report = PreloadDataset(*client_, kImages, options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->already_stored, 9u);
  EXPECT_EQ(report->decoded, 0u);
}

TEST_F(DatasetTest, LetterboxSamplesEqualTheFileBasedPipeline) {
  StartStore(128 << 20);
  PreloadOptions options;
  options.dataset = "coco-320";
  options.layout = SampleLayout::kLetterbox;
  options.letterbox_size = 320;
  auto report = PreloadDataset(*client_, kCocoJson, options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->samples, 80u);
  EXPECT_EQ(report->bytes, 80u * 3 * 320 * 320 * 4);

  auto reader = OpenReader("coco-320");
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->size(), 80u);
  EXPECT_EQ(reader->letterbox_size(), 320);
  EXPECT_EQ(reader->info(reader->Find("000000532481.jpg")).name, "000000532481.jpg");
  for (size_t i = 0; i < reader->size(); i += 7) {
    const SampleInfo& info = reader->info(i);
    // The file-based pipeline: decode, then letterbox.
    auto decoded = DecodeImageFile(info.path);
    ASSERT_TRUE(decoded.ok());
    std::vector<float> expected(3 * 320 * 320);
    Letterboxer letterboxer;
    auto geometry = letterboxer.Run(decoded->image.view(), LetterboxStyle::kUltralytics, 320, 320,
                                    expected.data(), expected.size());
    ASSERT_TRUE(geometry.ok());
    auto sample = reader->Get(i);
    ASSERT_TRUE(sample.ok()) << sample.status().ToString();
    ASSERT_EQ(sample->bytes().size(), expected.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(sample->bytes().data(), expected.data(), sample->bytes().size()), 0)
        << info.name;
    EXPECT_EQ(info.geometry.scale, geometry->scale);
    EXPECT_EQ(info.geometry.pad_x, geometry->pad_x);
    EXPECT_EQ(info.geometry.pad_y, geometry->pad_y);
    EXPECT_EQ(info.geometry.resized_width, geometry->resized_width);
    EXPECT_EQ(info.source_width, decoded->image.width());
    EXPECT_EQ(info.source_height, decoded->image.height());
  }
  EXPECT_TRUE(reader->CheckModelInput(320, 320, LetterboxStyle::kUltralytics).ok());
  Status wrong_size = reader->CheckModelInput(640, 640, LetterboxStyle::kUltralytics);
  EXPECT_EQ(wrong_size.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(wrong_size.message(), HasSubstr("--as letterbox:640"));
  Status wrong_style = reader->CheckModelInput(320, 320, LetterboxStyle::kYolox);
  EXPECT_THAT(wrong_style.message(), HasSubstr("--as letterbox-yolox:320"));
}

TEST_F(DatasetTest, YoloxLetterboxSamples) {
  StartStore(32 << 20);
  PreloadOptions options;
  options.dataset = "yolox";
  options.layout = SampleLayout::kLetterbox;
  options.letterbox_size = 416;
  options.letterbox_style = LetterboxStyle::kYolox;
  ASSERT_TRUE(PreloadDataset(*client_, kImages, options).ok());
  auto reader = OpenReader("yolox");
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->letterbox_style(), LetterboxStyle::kYolox);
  EXPECT_TRUE(reader->CheckModelInput(416, 416, LetterboxStyle::kYolox).ok());
  const size_t dog = reader->Find("dog.jpg");
  ASSERT_LT(dog, reader->size());
  SampleInfo info = reader->info(dog);
  auto expected =
      DecodeSample(info.path, SampleLayout::kLetterbox, 416, LetterboxStyle::kYolox, &info);
  ASSERT_TRUE(expected.ok());
  auto sample = reader->Get(dog);
  ASSERT_TRUE(sample.ok());
  ASSERT_EQ(sample->bytes().size(), expected->size());
  EXPECT_EQ(std::memcmp(sample->bytes().data(), expected->data(), expected->size()), 0);
  EXPECT_EQ(info.geometry.pad_x, reader->info(dog).geometry.pad_x);
}

TEST_F(DatasetTest, MissesDecodeAgainAndRestoreTheSample) {
  StartStore(64 << 20);
  PreloadOptions options;
  options.dataset = "photos";
  ASSERT_TRUE(PreloadDataset(*client_, kImages, options).ok());
  auto reader = OpenReader("photos");
  ASSERT_NE(reader, nullptr);
  auto before = reader->Get(3);
  ASSERT_TRUE(before.ok());
  const std::vector<uint8_t> expected(before->bytes().begin(), before->bytes().end());
  before = Sample();
  ASSERT_TRUE(client_->Delete(reader->info(3).id).ok());
  ASSERT_FALSE(client_->Contains(reader->info(3).id));

  auto after = reader->Get(3);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(after->from_store());
  EXPECT_TRUE(client_->Contains(reader->info(3).id));
  ASSERT_EQ(after->bytes().size(), expected.size());
  EXPECT_EQ(std::memcmp(after->bytes().data(), expected.data(), expected.size()), 0);
}

// Issue 14: concurrent preloads of one dataset failed at the manifest step although the
// dataset ended up complete.
TEST_F(DatasetTest, ConcurrentPreloadsOfOneDatasetAllSucceed) {
  StartStore(64 << 20);
  for (int round = 0; round < 3; ++round) {
    const std::string name = "photos-" + std::to_string(round);
    constexpr int kPreloads = 8;
    std::vector<Status> results(kPreloads);
    std::vector<std::thread> threads;
    for (int p = 0; p < kPreloads; ++p) {
      threads.emplace_back([&, p] {
        auto client = testing::MustConnect(socket_);
        PreloadOptions options;
        options.dataset = name;
        options.jobs = 1;
        results[static_cast<size_t>(p)] = PreloadDataset(*client, kImages, options).status();
      });
    }
    for (auto& t : threads) t.join();
    for (const Status& status : results) EXPECT_TRUE(status.ok()) << status.ToString();
    auto reader = OpenReader(name);
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(reader->size(), 9u);
  }
}

// Issue 7: a preload larger than the store succeeded silently by evicting (among others) the
// manifests of other datasets, which then vanished for their readers.
TEST_F(DatasetTest, APreloadThatCannotFitFailsUpFrontWithTheSizes) {
  StartStore(6 << 20);  // 9 RGB photos need about 14 MiB
  PreloadOptions options;
  options.dataset = "photos";
  auto report = PreloadDataset(*client_, kImages, options);
  ASSERT_EQ(report.status().code(), StatusCode::kResourceExhausted) << report.status().ToString();
  EXPECT_THAT(report.status().message(), HasSubstr("needs"));
  EXPECT_THAT(report.status().message(), HasSubstr("needs 14.1 MiB"));
  EXPECT_THAT(report.status().message(), HasSubstr("at most 6.0 MiB"));
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->objects, 0u);
}

TEST_F(DatasetTest, AnotherDatasetNeverEvictsAManifest) {
  StartStore(20 << 20);
  PreloadOptions small;
  small.dataset = "small";
  small.layout = SampleLayout::kLetterbox;
  small.letterbox_size = 160;
  ASSERT_TRUE(PreloadDataset(*client_, kImages, small).ok());
  {
    // Readers touch every sample after the manifest: the manifest is now the least recently
    // used object of the dataset.
    auto reader = OpenReader("small");
    ASSERT_NE(reader, nullptr);
    for (size_t i = 0; i < reader->size(); ++i) ASSERT_TRUE(reader->Get(i).ok());
  }
  PreloadOptions large = small;
  large.dataset = "large";
  large.letterbox_size = 416;  // 9 x 2 MiB: most of the store
  std::vector<std::string> warnings;
  large.warning = [&](const std::string& warning) { warnings.push_back(warning); };
  auto report = PreloadDataset(*client_, kImages, large);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("will be evicted"));
  // Every sample of the new dataset is in the store: none was evicted before it finished.
  auto large_reader = OpenReader("large");
  ASSERT_NE(large_reader, nullptr);
  for (size_t i = 0; i < large_reader->size(); ++i) {
    EXPECT_TRUE(client_->Contains(large_reader->info(i).id)) << large_reader->info(i).name;
  }
  large_reader.reset();
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->evictions, 0u);
  auto listed = client_->List();
  ASSERT_TRUE(listed.ok());
  size_t pinned = 0;
  for (const auto& info : *listed) pinned += info.pinned;
  EXPECT_EQ(pinned, 2u);  // the two manifests
  // The small dataset lost samples, not its manifest: its readers decode the misses again.
  auto reader = OpenReader("small");
  ASSERT_NE(reader, nullptr);
  for (size_t i = 0; i < reader->size(); ++i) {
    SampleInfo info = reader->info(i);
    auto expected =
        DecodeSample(info.path, SampleLayout::kLetterbox, 160, LetterboxStyle::kUltralytics, &info);
    ASSERT_TRUE(expected.ok());
    auto sample = reader->Get(i);
    ASSERT_TRUE(sample.ok()) << sample.status().ToString();
    ASSERT_EQ(sample->bytes().size(), expected->size());
    EXPECT_EQ(std::memcmp(sample->bytes().data(), expected->data(), expected->size()), 0);
  }
}

TEST_F(DatasetTest, ADifferentDatasetUnderTheSameNameIsRefused) {
  StartStore(64 << 20);
  PreloadOptions rgb;
  rgb.dataset = "photos";
  ASSERT_TRUE(PreloadDataset(*client_, kImages, rgb).ok());
  PreloadOptions letterbox = rgb;
  letterbox.layout = SampleLayout::kLetterbox;
  letterbox.letterbox_size = 320;
  auto refused = PreloadDataset(*client_, kImages, letterbox);
  ASSERT_EQ(refused.status().code(), StatusCode::kAlreadyExists) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(), HasSubstr("different"));
  auto reader = OpenReader("photos");
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->layout(), SampleLayout::kRgb8);
  reader.reset();
  // Asked to, it replaces the dataset.
  letterbox.replace = true;
  auto replaced = PreloadDataset(*client_, kImages, letterbox);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  reader = OpenReader("photos");
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->layout(), SampleLayout::kLetterbox);
  // The same dataset again is a no-op.
  auto again = PreloadDataset(*client_, kImages, letterbox);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->manifest_existed);
  EXPECT_EQ(again->decoded, 0u);
}

TEST_F(DatasetTest, ReadOnlyReadersServeMissesFromPrivateCopies) {
  StartStore(64 << 20);
  PreloadOptions options;
  options.dataset = "photos";
  ASSERT_TRUE(PreloadDataset(*client_, kImages, options).ok());
  auto read_only = StoreClient::Connect(socket_, {.access = store::StoreAccess::kReadOnly});
  ASSERT_TRUE(read_only.ok()) << read_only.status().ToString();
  auto reader = DatasetReader::Open(std::move(*read_only), "photos");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  const size_t dog = (*reader)->Find("dog.jpg");
  ASSERT_TRUE(client_->Delete((*reader)->info(dog).id).ok());
  auto sample = (*reader)->Get(dog);
  ASSERT_TRUE(sample.ok()) << sample.status().ToString();
  EXPECT_FALSE(sample->from_store());
  EXPECT_FALSE(client_->Contains((*reader)->info(dog).id));
  SampleInfo info = (*reader)->info(dog);
  auto expected =
      DecodeSample(info.path, SampleLayout::kRgb8, 0, LetterboxStyle::kUltralytics, &info);
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(sample->bytes().size(), expected->size());
  EXPECT_EQ(std::memcmp(sample->bytes().data(), expected->data(), expected->size()), 0);
  // And a read-only client cannot preload.
  auto another = StoreClient::Connect(socket_, {.access = store::StoreAccess::kReadOnly});
  ASSERT_TRUE(another.ok());
  EXPECT_EQ(PreloadDataset(**another, kImages, options).status().code(),
            StatusCode::kPermissionDenied);
}

TEST_F(DatasetTest, SamplesOutliveTheirReader) {
  StartStore(64 << 20);
  PreloadOptions options;
  options.dataset = "photos";
  ASSERT_TRUE(PreloadDataset(*client_, kImages, options).ok());
  auto reader = OpenReader("photos");
  ASSERT_NE(reader, nullptr);
  const size_t dog = reader->Find("dog.jpg");
  auto sample = reader->Get(dog);
  ASSERT_TRUE(sample.ok()) << sample.status().ToString();
  const std::vector<uint8_t> expected(sample->bytes().begin(), sample->bytes().end());
  reader.reset();
  EXPECT_EQ(sample->info().name, "dog.jpg");
  ASSERT_EQ(sample->bytes().size(), expected.size());
  EXPECT_EQ(std::memcmp(sample->bytes().data(), expected.data(), expected.size()), 0);
}

TEST_F(DatasetTest, UnknownDatasetAndTooSmallStore) {
  StartStore(1 << 20);
  auto reader = DatasetReader::Open(client_, "nothing");
  EXPECT_EQ(reader.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(reader.status().message(), HasSubstr("zerodet preload"));

  // A 640 letterbox sample (4.7 MiB) can never fit a 1 MiB store: the preload fails, names the
  // sizes and leaves nothing behind.
  PreloadOptions options;
  options.dataset = "big";
  options.layout = SampleLayout::kLetterbox;
  options.letterbox_size = 640;
  auto report = PreloadDataset(*client_, kImages, options);
  EXPECT_EQ(report.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(), HasSubstr("MiB"));
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->objects, 0u);
  EXPECT_EQ(PreloadDataset(*client_, kImages, PreloadOptions{}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(DatasetTest, CorruptManifestIsReported) {
  StartStore(1 << 20);
  const std::string junk = "{\"format\": \"something else\"}";
  auto buffer = client_->Create(ManifestId("junk"), junk.size());
  ASSERT_TRUE(buffer.ok());
  std::memcpy(buffer->data().data(), junk.data(), junk.size());
  ASSERT_TRUE(client_->Seal(std::move(*buffer)).ok());
  EXPECT_EQ(DatasetReader::Open(client_, "junk").status().code(), StatusCode::kCorruptData);
}

}  // namespace
}  // namespace zerodet::dataset
