// In-process tests of frame rings: API contracts, reader modes, overflow policies, bad input,
// and a multi-threaded no-torn-frames check (the suite ThreadSanitizer runs).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>
#include <vector>

#include "ring_test_util.h"
#include "test_support.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring {
namespace {

using std::chrono::milliseconds;
using testing::FillFrame;
using testing::FrameIntact;
using testing::UniqueRingName;

constexpr size_t kSmallSlot = 4096;

std::unique_ptr<RingWriter> MakeWriter(const std::string& name, int slots = 3,
                                       OverflowPolicy policy = OverflowPolicy::kOverwriteOldest,
                                       size_t slot_bytes = kSmallSlot) {
  RingOptions options;
  options.name = name;
  options.slot_count = slots;
  options.slot_bytes = slot_bytes;
  options.policy = policy;
  auto writer = RingWriter::Open(options);
  EXPECT_TRUE(writer.ok()) << writer.status().ToString();
  return writer.ok() ? std::move(writer).value() : nullptr;
}

std::unique_ptr<RingReader> MakeReader(const std::string& ring, ReaderMode mode,
                                       const std::string& group = "workers") {
  ReaderOptions options;
  options.ring_name = ring;
  options.mode = mode;
  options.group = group;
  auto reader = RingReader::Attach(options);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return reader.ok() ? std::move(reader).value() : nullptr;
}

// Publishes a self-checking frame of `bytes` bytes tagged `tag`; returns its sequence or 0.
uint64_t WriteTagged(RingWriter& writer, uint64_t tag, size_t bytes = kSmallSlot) {
  auto slot = writer.BeginFrame();
  if (!slot.ok()) return 0;
  FillFrame(tag, slot->subspan(0, bytes));
  FrameInfo info;
  info.format = FrameFormat::kEncoded;
  info.payload_bytes = bytes;
  info.timestamp_ns = static_cast<int64_t>(tag);
  auto seq = writer.Publish(info);
  return seq.ok() ? *seq : 0;
}

bool LeaseIntact(const FrameLease& lease) {
  return FrameIntact(static_cast<uint64_t>(lease.info().timestamp_ns), lease.payload());
}

TEST(RingTest, SegmentIsPrivateToTheUserAndUnlinkedOnCleanShutdown) {
  const std::string name = UniqueRingName("perm");
  const std::string path = "/dev/shm/zerodet-ring-" + name;
  const mode_t old_umask = ::umask(0);  // a permissive umask must not widen the mode
  auto writer = MakeWriter(name);
  ::umask(old_umask);
  ASSERT_NE(writer, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  const std::vector<std::string> rings = ListRings();
  EXPECT_NE(std::find(rings.begin(), rings.end(), name), rings.end());
  writer.reset();
  EXPECT_NE(::stat(path.c_str(), &st), 0);
}

TEST(RingTest, RejectsBadOptionsWithActionableMessages) {
  RingOptions options;
  options.slot_bytes = kSmallSlot;
  for (const char* bad : {"", "has space", "slash/name", "x.tmp.12"}) {
    options.name = bad;
    auto writer = RingWriter::Open(options);
    EXPECT_EQ(writer.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  options.name = std::string(kMaxNameLength + 1, 'a');
  EXPECT_EQ(RingWriter::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.name = UniqueRingName("bad");
  options.slot_count = 1;
  auto one_slot = RingWriter::Open(options);
  EXPECT_EQ(one_slot.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(one_slot.status().message().find("slot_count 1"), std::string::npos);
  options.slot_count = 4;
  options.slot_bytes = 0;
  EXPECT_EQ(RingWriter::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.slot_bytes = kSmallSlot;
  options.max_readers = kMaxReaders + 1;
  EXPECT_EQ(RingWriter::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.max_readers = 4;
  options.policy = static_cast<OverflowPolicy>(99);
  EXPECT_EQ(RingWriter::Open(options).status().code(), StatusCode::kInvalidArgument);

  ReaderOptions reader;
  reader.ring_name = "bad name";
  EXPECT_EQ(RingReader::Attach(reader).status().code(), StatusCode::kInvalidArgument);
  reader.ring_name = UniqueRingName("missing");
  auto missing = RingReader::Attach(reader);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(reader.ring_name), std::string::npos);
  // A spin beyond a second (or negative) is refused rather than overflowing the clock.
  reader.spin = std::chrono::microseconds::max();
  EXPECT_EQ(RingReader::Attach(reader).status().code(), StatusCode::kInvalidArgument);
  reader.spin = std::chrono::microseconds(-1);
  EXPECT_EQ(RingReader::Attach(reader).status().code(), StatusCode::kInvalidArgument);
}

TEST(RingTest, ForeignFileUnderARingNameIsCorruptData) {
  const std::string name = UniqueRingName("foreign");
  const std::string path = "/dev/shm/zerodet-ring-" + name;
  {
    std::ofstream out(path, std::ios::binary);
    const std::string junk(100000, 'x');
    out << junk;
  }
  ReaderOptions reader;
  reader.ring_name = name;
  auto attached = RingReader::Attach(reader);
  EXPECT_EQ(attached.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(attached.status().message().find(path), std::string::npos);
  RingOptions options;
  options.name = name;
  options.slot_bytes = kSmallSlot;
  EXPECT_EQ(RingWriter::Open(options).status().code(), StatusCode::kCorruptData);
  // Too short to hold a header.
  { std::ofstream truncate(path, std::ios::binary | std::ios::trunc); }
  EXPECT_EQ(RingReader::Attach(reader).status().code(), StatusCode::kCorruptData);
  ::unlink(path.c_str());
}

TEST(RingTest, SecondLiveWriterIsRefused) {
  const std::string name = UniqueRingName("twowriters");
  auto writer = MakeWriter(name);
  ASSERT_NE(writer, nullptr);
  RingOptions options;
  options.name = name;
  options.slot_count = 3;
  options.slot_bytes = kSmallSlot;
  auto second = RingWriter::Open(options);
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find(std::to_string(::getpid())), std::string::npos);
}

// A real photo, decoded with libjpeg-turbo, goes through the ring unchanged.
TEST(RingTest, DecodedPhotoRoundTripsWithItsHeader) {
  std::ifstream in(ZERODET_SHARED_DIR "/images/dog.jpg", std::ios::binary);
  ASSERT_TRUE(in) << "missing " ZERODET_SHARED_DIR "/images/dog.jpg";
  std::vector<unsigned char> jpeg((std::istreambuf_iterator<char>(in)), {});
  tjhandle tj = tjInitDecompress();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  ASSERT_EQ(
      tjDecompressHeader3(tj, jpeg.data(), jpeg.size(), &width, &height, &subsampling, &colorspace),
      0);
  Image photo(width, height, PixelFormat::kRGB8);
  ASSERT_EQ(
      tjDecompress2(tj, jpeg.data(), jpeg.size(), photo.data(), width, 0, height, TJPF_RGB, 0), 0);
  tjDestroy(tj);

  const std::string name = UniqueRingName("photo");
  auto writer = MakeWriter(name, 2, OverflowPolicy::kOverwriteOldest,
                           SlotBytesFor(width, height, PixelFormat::kRGB8));
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kWorkGroup);
  ASSERT_NE(reader, nullptr);
  auto seq = writer->WriteImage(photo.view(), 123456789);
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_EQ(*seq, 1u);
  auto lease = reader->Read(milliseconds(1000));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  const FrameInfo& info = lease->info();
  EXPECT_EQ(info.sequence, 1u);
  EXPECT_EQ(info.timestamp_ns, 123456789);
  EXPECT_GT(info.publish_time_ns, 0);
  EXPECT_EQ(info.writer_epoch, 1u);
  EXPECT_EQ(info.width, width);
  EXPECT_EQ(info.height, height);
  EXPECT_EQ(info.stride, static_cast<uint32_t>(width * 3));
  EXPECT_EQ(info.pixel_format, PixelFormat::kRGB8);
  EXPECT_EQ(info.format, FrameFormat::kRawPixels);
  ASSERT_EQ(lease->payload().size(), photo.size_bytes());
  EXPECT_EQ(std::memcmp(lease->image().data, photo.data(), photo.size_bytes()), 0);
}

TEST(RingTest, WorkGroupGivesEachFrameToOneMemberAndGroupsFanOut) {
  const std::string name = UniqueRingName("group");
  auto writer = MakeWriter(name, 4);
  ASSERT_NE(writer, nullptr);
  auto a = MakeReader(name, ReaderMode::kWorkGroup, "yolo");
  auto b = MakeReader(name, ReaderMode::kWorkGroup, "yolo");
  auto other_model = MakeReader(name, ReaderMode::kWorkGroup, "other");
  ASSERT_TRUE(a && b && other_model);
  ASSERT_EQ(WriteTagged(*writer, 11), 1u);
  ASSERT_EQ(WriteTagged(*writer, 22), 2u);
  auto first = a->Read(milliseconds(1000));
  auto second = b->Read(milliseconds(1000));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->info().sequence, 1u);
  EXPECT_EQ(second->info().sequence, 2u);
  EXPECT_TRUE(LeaseIntact(*first));
  EXPECT_TRUE(LeaseIntact(*second));
  // The group has both frames: nothing is left for a.
  EXPECT_EQ(a->Read(milliseconds(0)).status().code(), StatusCode::kDeadlineExceeded);
  // The other group gets both frames too, from the same slots (no second copy).
  auto o1 = other_model->Read(milliseconds(1000));
  auto o2 = other_model->Read(milliseconds(1000));
  ASSERT_TRUE(o1.ok() && o2.ok());
  EXPECT_EQ(o1->info().sequence, 1u);
  EXPECT_EQ(o2->info().sequence, 2u);
  EXPECT_TRUE(LeaseIntact(*o1));
  EXPECT_EQ(o1->info().timestamp_ns, first->info().timestamp_ns);
}

TEST(RingTest, BroadcastSeesEveryFrameWhileKeepingUpThenTheNewest) {
  const std::string name = UniqueRingName("broadcast");
  auto writer = MakeWriter(name, 3);
  ASSERT_NE(writer, nullptr);
  auto s1 = MakeReader(name, ReaderMode::kBroadcast);
  auto s2 = MakeReader(name, ReaderMode::kBroadcast);
  ASSERT_TRUE(s1 && s2);
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_EQ(WriteTagged(*writer, 100 + i), i);
    for (RingReader* s : {s1.get(), s2.get()}) {
      auto lease = s->Read(milliseconds(1000));
      ASSERT_TRUE(lease.ok()) << lease.status().ToString();
      EXPECT_EQ(lease->info().sequence, i);
      EXPECT_TRUE(LeaseIntact(*lease));
    }
  }
  // Behind by less than the ring holds: s2 still gets the next frame in order.
  ASSERT_EQ(WriteTagged(*writer, 106), 6u);
  ASSERT_EQ(WriteTagged(*writer, 107), 7u);
  {
    auto next = s2->Read(milliseconds(1000));
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->info().sequence, 6u);
  }
  // s1 falls behind by more than the ring holds: it gets the newest frame, the rest is missed.
  for (uint64_t i = 8; i <= 12; ++i) ASSERT_EQ(WriteTagged(*writer, 100 + i), i);
  auto newest = s1->Read(milliseconds(1000));
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(newest->info().sequence, 12u);
  EXPECT_TRUE(LeaseIntact(*newest));
  EXPECT_EQ(s1->Stats().frames_missed, 6u);
  EXPECT_EQ(s1->Stats().frames_read, 6u);
  EXPECT_EQ(s2->Stats().frames_missed, 0u);
}

TEST(RingTest, OverwriteOldestNeverTouchesAHeldFrame) {
  const std::string name = UniqueRingName("overwrite");
  auto writer = MakeWriter(name, 3, OverflowPolicy::kOverwriteOldest);
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kWorkGroup);
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(WriteTagged(*writer, 1000), 1u);
  auto held = reader->Read(milliseconds(1000));
  ASSERT_TRUE(held.ok());
  for (uint64_t i = 2; i <= 20; ++i) ASSERT_EQ(WriteTagged(*writer, 1000 + i), i);
  EXPECT_TRUE(LeaseIntact(*held));
  EXPECT_EQ(held->info().sequence, 1u);
  const RingStats stats = writer->Stats();
  EXPECT_EQ(stats.frames_published, 20u);
  EXPECT_EQ(stats.frames_dropped, 0u);
  // Two free slots cycled through frames 2..20; the group, still wanting frame 2, lost 2..18.
  EXPECT_EQ(stats.frames_overwritten, 17u);
  auto next = reader->Read(milliseconds(1000));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->info().sequence, 19u);
  EXPECT_EQ(reader->Stats().frames_missed, 17u);
}

TEST(RingTest, DropNewestKeepsFramesTheGroupHasNotTaken) {
  const std::string name = UniqueRingName("dropnew");
  auto writer = MakeWriter(name, 3, OverflowPolicy::kDropNewest);
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kWorkGroup);
  ASSERT_NE(reader, nullptr);
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_EQ(WriteTagged(*writer, i), i);
  auto dropped = writer->BeginFrame();
  EXPECT_EQ(dropped.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(dropped.status().message().find(name), std::string::npos);
  EXPECT_EQ(writer->Stats().frames_dropped, 1u);
  {
    auto first = reader->Read(milliseconds(1000));
    ASSERT_TRUE(first.ok());
    EXPECT_EQ(first->info().sequence, 1u);
  }
  // Frame 1 was taken and released: its slot is free again. Sequence numbers have no gaps
  // for dropped frames.
  EXPECT_EQ(WriteTagged(*writer, 4), 4u);
  for (uint64_t want = 2; want <= 4; ++want) {
    auto lease = reader->Read(milliseconds(1000));
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->info().sequence, want);
    EXPECT_TRUE(LeaseIntact(*lease));
  }
  EXPECT_EQ(reader->Stats().frames_missed, 0u);
}

TEST(RingTest, BroadcastSubscribersNeverMakeTheWriterDrop) {
  const std::string name = UniqueRingName("dropnew-bc");
  auto writer = MakeWriter(name, 3, OverflowPolicy::kDropNewest);
  ASSERT_NE(writer, nullptr);
  auto subscriber = MakeReader(name, ReaderMode::kBroadcast);
  ASSERT_NE(subscriber, nullptr);
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_EQ(WriteTagged(*writer, i), i);
  EXPECT_EQ(writer->Stats().frames_dropped, 0u);
}

TEST(RingTest, WhenEverySlotIsHeldEvenOverwriteDrops) {
  const std::string name = UniqueRingName("allheld");
  auto writer = MakeWriter(name, 2, OverflowPolicy::kOverwriteOldest);
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kBroadcast);
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(WriteTagged(*writer, 1), 1u);
  auto h1 = reader->Read(milliseconds(1000));
  ASSERT_EQ(WriteTagged(*writer, 2), 2u);
  auto h2 = reader->Read(milliseconds(1000));
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(writer->BeginFrame().status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(writer->Stats().frames_dropped, 1u);
  h1->Release();
  EXPECT_EQ(WriteTagged(*writer, 3), 3u);
  EXPECT_TRUE(LeaseIntact(*h2));
}

TEST(RingTest, ReadTimesOutAndReportsACleanClose) {
  const std::string name = UniqueRingName("timeout");
  auto writer = MakeWriter(name);
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kWorkGroup);
  ASSERT_NE(reader, nullptr);
  auto none = reader->Read(milliseconds(30));
  EXPECT_EQ(none.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(reader->WriterAlive());
  EXPECT_FALSE(reader->WriterClosed());
  ASSERT_EQ(WriteTagged(*writer, 7), 1u);
  writer.reset();
  EXPECT_FALSE(reader->WriterAlive());
  EXPECT_TRUE(reader->WriterClosed());
  // What was published before the close is still delivered, then the close is reported.
  auto last = reader->Read(milliseconds(1000));
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(LeaseIntact(*last));
  last->Release();
  auto closed = reader->Read(milliseconds(1000));
  EXPECT_EQ(closed.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(closed.status().message().find("closed"), std::string::npos);
}

// True while thread `tid` of this process sleeps in a futex system call (a reader waiting for a
// frame), from /proc/self/task/<tid>/syscall.
bool InFutexWait(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  long number = -1;
  return (in >> number) && number == SYS_futex;
}

TEST(RingTest, ReadWithAnEndlessTimeoutWaitsForTheNextFrame) {
  // milliseconds::max() converted to nanoseconds used to overflow into a deadline in the past:
  // Read gave up at once with kDeadlineExceeded instead of waiting.
  const std::string name = UniqueRingName("endless");
  auto writer = MakeWriter(name);
  ASSERT_NE(writer, nullptr);
  auto reader = MakeReader(name, ReaderMode::kWorkGroup);
  ASSERT_NE(reader, nullptr);
  std::atomic<pid_t> tid{0};
  std::atomic<bool> returned{false};
  std::optional<Result<FrameLease>> got;
  std::thread waiter([&] {
    tid = ::gettid();
    got.emplace(reader->Read(milliseconds::max()));
    returned = true;
  });
  const bool settled = zerodet::testing::WaitFor(
      [&] { return returned.load() || (tid.load() != 0 && InFutexWait(tid.load())); });
  const bool gave_up = returned.load();
  if (!gave_up) {
    EXPECT_EQ(WriteTagged(*writer, 9), 1u);
  }
  waiter.join();
  ASSERT_TRUE(settled);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(gave_up) << "Read returned before any frame: " << got->status().ToString();
  ASSERT_TRUE(got->ok()) << got->status().ToString();
  EXPECT_EQ((*got)->info().sequence, 1u);
  (*got)->Release();
  // Negative timeouts mean "do not wait", not "wait forever".
  EXPECT_EQ(reader->Read(milliseconds(-5)).status().code(), StatusCode::kDeadlineExceeded);
}

TEST(RingTest, PublishContractViolationsAreErrors) {
  const std::string name = UniqueRingName("publish");
  auto writer = MakeWriter(name);
  ASSERT_NE(writer, nullptr);
  FrameInfo info;
  info.format = FrameFormat::kEncoded;
  info.payload_bytes = 16;
  EXPECT_EQ(writer->Publish(info).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(writer->BeginFrame().ok());
  info.payload_bytes = kSmallSlot + 1;
  auto too_big = writer->Publish(info);
  EXPECT_EQ(too_big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.status().message().find(std::to_string(kSmallSlot)), std::string::npos);
  ASSERT_TRUE(writer->BeginFrame().ok());  // the failed frame was abandoned
  info.format = FrameFormat::kRawPixels;
  info.width = 10;
  info.height = 10;
  info.stride = 20;  // < 10 pixels * 3 bytes
  EXPECT_EQ(writer->Publish(info).status().code(), StatusCode::kInvalidArgument);
  Image big(100, 100, PixelFormat::kRGB8);
  auto no_room = writer->WriteImage(big.view(), 0);
  EXPECT_EQ(no_room.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_room.status().message().find("100x100"), std::string::npos);
  EXPECT_EQ(writer->WriteImage(ImageView{}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->Stats().frames_published, 0u);
}

TEST(RingTest, ReaderAndGroupTablesHaveLimits) {
  const std::string name = UniqueRingName("limits");
  RingOptions options;
  options.name = name;
  options.slot_bytes = kSmallSlot;
  options.max_readers = 2;
  auto writer = RingWriter::Open(options);
  ASSERT_TRUE(writer.ok());
  auto r1 = MakeReader(name, ReaderMode::kBroadcast);
  auto r2 = MakeReader(name, ReaderMode::kBroadcast);
  ReaderOptions third;
  third.ring_name = name;
  auto refused = RingReader::Attach(third);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("2 reader entries"), std::string::npos);
  r2.reset();  // detaching frees the entry
  EXPECT_TRUE(RingReader::Attach(third).ok());
  EXPECT_EQ((*writer)->Stats().readers_attached, 1);
}

// Writer and readers in threads of one process, hammering 3 slots: every frame a reader gets
// must be intact when taken and still intact when released.
TEST(RingTest, NoTornFramesUnderThreadedLoad) {
  const std::string name = UniqueRingName("threads");
  constexpr size_t kFrameBytes = 16 * 1024;
  constexpr int kFrames = 3000;
  auto writer = MakeWriter(name, 3, OverflowPolicy::kOverwriteOldest, kFrameBytes);
  ASSERT_NE(writer, nullptr);
  std::vector<std::unique_ptr<RingReader>> readers;
  readers.push_back(MakeReader(name, ReaderMode::kWorkGroup, "g"));
  readers.push_back(MakeReader(name, ReaderMode::kWorkGroup, "g"));
  readers.push_back(MakeReader(name, ReaderMode::kBroadcast));
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  std::vector<int> good(readers.size(), 0), torn(readers.size(), 0);
  for (size_t r = 0; r < readers.size(); ++r) {
    threads.emplace_back([&, r] {
      for (;;) {
        auto lease = readers[r]->Read(milliseconds(20));
        if (!lease.ok()) {
          if (done.load()) return;
          continue;
        }
        const bool intact_at_take = LeaseIntact(*lease);
        std::this_thread::yield();  // hold it a little while the writer keeps going
        const bool intact_at_release = LeaseIntact(*lease);
        (intact_at_take && intact_at_release ? good : torn)[r]++;
      }
    });
  }
  int published = 0;
  for (int i = 1; i <= kFrames; ++i) {
    if (WriteTagged(*writer, testing::SplitMix64(static_cast<uint64_t>(i)), kFrameBytes) != 0) {
      ++published;
    }
  }
  done.store(true);
  for (auto& t : threads) t.join();
  const RingStats stats = writer->Stats();
  EXPECT_EQ(stats.frames_published, static_cast<uint64_t>(published));
  EXPECT_EQ(stats.frames_published + stats.frames_dropped, static_cast<uint64_t>(kFrames));
  for (size_t r = 0; r < readers.size(); ++r) {
    EXPECT_EQ(torn[r], 0) << "reader " << r;
    EXPECT_GT(good[r] + (r < 2 ? good[1 - r] : 0), 0) << "reader " << r;
  }
}

}  // namespace
}  // namespace zerodet::ring
