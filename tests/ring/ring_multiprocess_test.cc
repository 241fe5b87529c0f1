// Frame rings across real processes (fork): no torn frames under load with the writer and
// readers in different processes, work-group exclusivity, reclaim of slots held by a killed
// reader, detection of a killed writer and resumption by a new one, and stale-segment cleanup.
//
// Each test forks before it starts any thread, so the children are plain single-threaded
// copies of the test process.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
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
using zerodet::testing::ForkChild;
using zerodet::testing::Pipe;
using zerodet::testing::WaitChild;
using zerodet::testing::WaitFor;

RingOptions Options(const std::string& name, int slots, size_t slot_bytes,
                    OverflowPolicy policy = OverflowPolicy::kOverwriteOldest) {
  RingOptions options;
  options.name = name;
  options.slot_count = slots;
  options.slot_bytes = slot_bytes;
  options.policy = policy;
  return options;
}

ReaderOptions ReaderFor(const std::string& ring, ReaderMode mode, const std::string& group = "g") {
  ReaderOptions options;
  options.ring_name = ring;
  options.mode = mode;
  options.group = group;
  return options;
}

// Publishes a self-checking frame tagged `tag` (the tag also goes into timestamp_ns).
Result<uint64_t> WriteTagged(RingWriter& writer, uint64_t tag, size_t bytes) {
  ZD_ASSIGN_OR_RETURN(std::span<uint8_t> slot, writer.BeginFrame());
  FillFrame(tag, slot.subspan(0, bytes));
  FrameInfo info;
  info.format = FrameFormat::kEncoded;
  info.payload_bytes = bytes;
  info.timestamp_ns = static_cast<int64_t>(tag);
  return writer.Publish(info);
}

bool LeaseIntact(const FrameLease& lease) {
  return FrameIntact(static_cast<uint64_t>(lease.info().timestamp_ns), lease.payload());
}

// What a reader child reports to the parent when the ring closes.
struct ReaderReport {
  uint64_t good = 0;
  uint64_t torn = 0;
  uint64_t missed = 0;
  uint64_t sequence_count = 0;  // followed by that many uint64_t sequences
};

// Reads until the writer closes the ring, checking every frame when taken and again after
// holding it a while (the writer keeps writing meanwhile). Sends a ReaderReport and the
// sequences it got through `out`. Exit code 0 when it ran to the close, 2..4 on setup errors.
int ReaderChild(const ReaderOptions& options, Pipe& ready, Pipe& out) {
  auto reader = RingReader::Attach(options);
  if (!reader.ok()) return 2;
  const char attached = 1;
  if (!ready.Send(attached)) return 3;
  ReaderReport report;
  std::vector<uint64_t> sequences;
  for (;;) {
    auto lease = (*reader)->Read(milliseconds(5000));
    if (!lease.ok()) {
      if (lease.status().code() == StatusCode::kUnavailable) break;
      return 4;
    }
    const bool at_take = LeaseIntact(*lease);
    std::this_thread::yield();
    const bool at_release = LeaseIntact(*lease);
    (at_take && at_release ? report.good : report.torn)++;
    sequences.push_back(lease->info().sequence);
  }
  report.missed = (*reader)->Stats().frames_missed;
  report.sequence_count = sequences.size();
  out.Send(report);
  for (uint64_t s : sequences) out.Send(s);
  return 0;
}

TEST(RingMultiprocessTest, NoTornFramesAndExclusiveWorkGroupAcrossProcesses) {
  const std::string name = UniqueRingName("mp-load");
  constexpr size_t kFrameBytes = 256 * 1024;
  constexpr int kFrames = 1500;
  auto writer = RingWriter::Open(Options(name, 4, kFrameBytes));
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();

  // Two workers of one group and one broadcast subscriber, each its own process.
  const std::vector<ReaderOptions> roles = {ReaderFor(name, ReaderMode::kWorkGroup),
                                            ReaderFor(name, ReaderMode::kWorkGroup),
                                            ReaderFor(name, ReaderMode::kBroadcast)};
  std::vector<std::unique_ptr<Pipe>> ready, reports;
  std::vector<pid_t> children;
  for (const ReaderOptions& role : roles) {
    ready.push_back(std::make_unique<Pipe>());
    reports.push_back(std::make_unique<Pipe>());
    Pipe& r = *ready.back();
    Pipe& o = *reports.back();
    children.push_back(ForkChild([&] { return ReaderChild(role, r, o); }));
  }
  for (auto& r : ready) {
    char attached = 0;
    ASSERT_TRUE(r->Receive(attached)) << "a reader child failed to attach";
  }

  for (int i = 1; i <= kFrames; ++i) {
    auto seq = WriteTagged(**writer, testing::SplitMix64(static_cast<uint64_t>(i)), kFrameBytes);
    ASSERT_TRUE(seq.ok() || seq.status().code() == StatusCode::kResourceExhausted)
        << seq.status().ToString();
  }
  const RingStats stats = (*writer)->Stats();
  writer->reset();  // clean close: readers drain what is left, then see kUnavailable

  std::vector<ReaderReport> got(roles.size());
  std::vector<std::vector<uint64_t>> sequences(roles.size());
  for (size_t r = 0; r < roles.size(); ++r) {
    reports[r]->CloseWrite();
    ASSERT_TRUE(reports[r]->Receive(got[r])) << "reader " << r << " sent no report";
    sequences[r].resize(got[r].sequence_count);
    for (uint64_t& s : sequences[r]) ASSERT_TRUE(reports[r]->Receive(s));
  }
  for (size_t r = 0; r < roles.size(); ++r) EXPECT_EQ(WaitChild(children[r]), 0) << "reader " << r;

  EXPECT_EQ(stats.frames_published + stats.frames_dropped, static_cast<uint64_t>(kFrames));
  for (size_t r = 0; r < roles.size(); ++r) {
    EXPECT_EQ(got[r].torn, 0u) << "reader " << r;
    EXPECT_TRUE(std::is_sorted(sequences[r].begin(), sequences[r].end())) << "reader " << r;
  }
  // The group: each published frame went to exactly one member or was counted as missed.
  std::set<uint64_t> group_frames(sequences[0].begin(), sequences[0].end());
  for (uint64_t s : sequences[1]) EXPECT_TRUE(group_frames.insert(s).second) << "frame " << s;
  EXPECT_EQ(group_frames.size() + got[0].missed, stats.frames_published);
  EXPECT_EQ(got[0].missed, got[1].missed);  // one counter per group
  // The broadcast subscriber: every frame seen or counted as missed.
  EXPECT_EQ(got[2].good + got[2].missed, stats.frames_published);
  EXPECT_GT(got[2].good, 0u);
}

TEST(RingMultiprocessTest, SlotsHeldByAKilledReaderAreReclaimed) {
  const std::string name = UniqueRingName("mp-reclaim");
  constexpr size_t kBytes = 4096;
  auto writer = RingWriter::Open(Options(name, 2, kBytes));
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  ASSERT_TRUE(WriteTagged(**writer, 1, kBytes).ok());
  ASSERT_TRUE(WriteTagged(**writer, 2, kBytes).ok());

  Pipe holding;
  const pid_t child = ForkChild([&] {
    auto reader = RingReader::Attach(ReaderFor(name, ReaderMode::kBroadcast));
    if (!reader.ok()) return 2;
    // A subscriber starts at the next frame: the parent publishes frames 3 and 4 once we are
    // attached, and we hold both.
    const char attached = 1;
    holding.Send(attached);
    auto first = (*reader)->Read(milliseconds(5000));
    auto second = (*reader)->Read(milliseconds(5000));
    if (!first.ok() || !second.ok()) return 3;
    const char held = 2;
    holding.Send(held);
    ::pause();  // killed here, holding both slots
    return 0;
  });
  char message = 0;
  ASSERT_TRUE(holding.Receive(message));
  ASSERT_EQ(message, 1);
  ASSERT_TRUE(WriteTagged(**writer, 3, kBytes).ok());
  ASSERT_TRUE(WriteTagged(**writer, 4, kBytes).ok());
  ASSERT_TRUE(holding.Receive(message));
  ASSERT_EQ(message, 2);

  // Both slots are held by a live reader: the writer must drop, not overwrite.
  EXPECT_EQ((*writer)->BeginFrame().status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ((*writer)->ReclaimDeadReaders(), 0);

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  // Not reaped yet: a zombie counts as dead. Wait until the kernel has finished the kill.
  int reclaimed = 0;
  EXPECT_TRUE(WaitFor([&] { return (reclaimed = (*writer)->ReclaimDeadReaders()) != 0; }));
  EXPECT_EQ(reclaimed, 1);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  const RingStats stats = (*writer)->Stats();
  EXPECT_EQ(stats.readers_reclaimed, 1u);
  EXPECT_EQ(stats.slots_reclaimed, 2u);
  EXPECT_EQ(stats.readers_attached, 0);
  EXPECT_TRUE(WriteTagged(**writer, 5, kBytes).ok());
  EXPECT_TRUE(WriteTagged(**writer, 6, kBytes).ok());
}

TEST(RingMultiprocessTest, BeginFrameItselfReclaimsAKilledWorker) {
  const std::string name = UniqueRingName("mp-reclaim-auto");
  constexpr size_t kBytes = 4096;
  auto writer = RingWriter::Open(Options(name, 2, kBytes, OverflowPolicy::kDropNewest));
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  Pipe holding;
  const pid_t child = ForkChild([&] {
    auto reader = RingReader::Attach(ReaderFor(name, ReaderMode::kWorkGroup, "workers"));
    if (!reader.ok()) return 2;
    const char attached = 1;
    holding.Send(attached);
    auto lease = (*reader)->Read(milliseconds(5000));
    if (!lease.ok()) return 3;
    holding.Send(attached);
    ::pause();
    return 0;
  });
  char message = 0;
  ASSERT_TRUE(holding.Receive(message));
  ASSERT_TRUE(WriteTagged(**writer, 1, kBytes).ok());
  ASSERT_TRUE(holding.Receive(message));
  ASSERT_TRUE(WriteTagged(**writer, 2, kBytes).ok());
  // Slot 1 held, slot 2 not yet taken by the group: under kDropNewest nothing is free.
  EXPECT_EQ((*writer)->BeginFrame().status().code(), StatusCode::kResourceExhausted);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(WaitChild(child), 128 + SIGKILL);
  // The dead worker was the group's only member: its held frame is reclaimed and the group no
  // longer holds frames back, so the writer gets a slot again without anyone's help.
  EXPECT_TRUE(WaitFor([&] { return WriteTagged(**writer, 3, kBytes).ok(); }));
  EXPECT_EQ((*writer)->Stats().slots_reclaimed, 1u);
}

TEST(RingMultiprocessTest, KilledWriterIsDetectedAndARestartedWriterResumes) {
  const std::string name = UniqueRingName("mp-writer");
  constexpr size_t kBytes = 8192;
  constexpr int kSlots = 3;
  Pipe to_parent, to_child;
  const pid_t child = ForkChild([&] {
    auto writer = RingWriter::Open(Options(name, kSlots, kBytes));
    if (!writer.ok()) return 2;
    const char opened = 1;
    to_parent.Send(opened);
    char go = 0;
    if (!to_child.Receive(go)) return 3;
    for (uint64_t tag = 1; tag <= 2; ++tag) {
      if (!WriteTagged(**writer, tag, kBytes).ok()) return 4;
    }
    // Die in the middle of writing a frame: the claimed slot must not be lost.
    if (!(*writer)->BeginFrame().ok()) return 5;
    to_parent.Send(opened);
    ::pause();
    return 0;
  });
  char message = 0;
  ASSERT_TRUE(to_parent.Receive(message));
  auto reader = RingReader::Attach(ReaderFor(name, ReaderMode::kWorkGroup));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ASSERT_TRUE(to_child.Send(message));
  ASSERT_TRUE(to_parent.Receive(message));
  EXPECT_TRUE((*reader)->WriterAlive());
  for (uint64_t want = 1; want <= 2; ++want) {
    auto lease = (*reader)->Read(milliseconds(5000));
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    EXPECT_EQ(lease->info().sequence, want);
    EXPECT_EQ(lease->info().writer_epoch, 1u);
    EXPECT_TRUE(LeaseIntact(*lease));
  }

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(WaitChild(child), 128 + SIGKILL);
  EXPECT_FALSE((*reader)->WriterAlive());
  EXPECT_FALSE((*reader)->WriterClosed());  // died, not closed: a new writer may resume
  auto dead = (*reader)->Read(milliseconds(5000));
  EXPECT_EQ(dead.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(dead.status().message().find("died"), std::string::npos) << dead.status().ToString();

  // A second writer of another geometry is refused while the reader is attached.
  auto reshaped = RingWriter::Open(Options(name, kSlots + 1, kBytes));
  EXPECT_EQ(reshaped.status().code(), StatusCode::kFailedPrecondition);

  auto restarted = RingWriter::Open(Options(name, kSlots, kBytes));
  ASSERT_TRUE(restarted.ok()) << restarted.status().ToString();
  EXPECT_TRUE((*reader)->WriterAlive());
  EXPECT_EQ((*restarted)->Stats().writer_epoch, 2u);
  EXPECT_EQ((*restarted)->Stats().readers_attached, 1);
  // Every slot is usable again (the one the dead writer was filling included) and sequence
  // numbers continue.
  for (uint64_t i = 0; i < static_cast<uint64_t>(kSlots); ++i) {
    auto seq = WriteTagged(**restarted, 100 + i, kBytes);
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    EXPECT_EQ(*seq, 3 + i);
  }
  std::vector<FrameLease> held;
  for (uint64_t i = 0; i < static_cast<uint64_t>(kSlots); ++i) {
    auto lease = (*reader)->Read(milliseconds(5000));
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    EXPECT_EQ(lease->info().sequence, 3 + i);
    EXPECT_EQ(lease->info().writer_epoch, 2u);
    EXPECT_TRUE(LeaseIntact(*lease));
    held.push_back(std::move(*lease));
  }
}

TEST(RingMultiprocessTest, ARingWhoseWriterDiedCanBeClosedForItsReaders) {
  // A writer that died is waited for: readers keep their place for a writer that resumes. When
  // none will (its supervisor is stopping), the ring must end for them as a clean close would.
  const std::string name = UniqueRingName("mp-abandoned");
  constexpr size_t kBytes = 4096;
  Pipe to_parent, to_child;
  const pid_t child = ForkChild([&] {
    auto writer = RingWriter::Open(Options(name, 3, kBytes));
    if (!writer.ok()) return 2;
    const char ready = 1;
    to_parent.Send(ready);
    char go = 0;
    to_child.Receive(go);  // the parent attached
    if (!WriteTagged(**writer, 41, kBytes).ok()) return 3;
    ::_exit(0);  // no destructor: the ring is left open, as by a crash
  });
  char message = 0;
  ASSERT_TRUE(to_parent.Receive(message));
  auto reader = RingReader::Attach(ReaderFor(name, ReaderMode::kWorkGroup));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  // A live writer's ring is not closed by anyone else.
  EXPECT_EQ(CloseAbandonedRing(name).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(to_child.Send(message));
  ASSERT_EQ(WaitChild(child), 0);
  EXPECT_FALSE((*reader)->WriterClosed());

  auto final_stats = CloseAbandonedRing(name);
  ASSERT_TRUE(final_stats.ok()) << final_stats.status().ToString();
  EXPECT_EQ(final_stats->frames_published, 1u);
  EXPECT_TRUE((*reader)->WriterClosed());
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/zerodet-ring-" + name));
  // What was published is still delivered, then the end.
  auto last = (*reader)->Read(milliseconds(5000));
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(last->info().sequence, 1u);
  last->Release();
  auto closed = (*reader)->Read(milliseconds(5000));
  EXPECT_EQ(closed.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(closed.status().message().find("closed"), std::string::npos);
  EXPECT_EQ(CloseAbandonedRing(name).status().code(), StatusCode::kNotFound);
}

TEST(RingMultiprocessTest, StaleSegmentsOfDeadProcessesAreRemoved) {
  const std::string prefix = UniqueRingName("mp-stale");
  const std::string dead_name = prefix + "-dead";
  const std::string live_name = prefix + "-live";
  const std::string half_made = prefix + "-half.tmp.";
  // A writer and a reader that die without shutting down leave their segment behind.
  const pid_t child = ForkChild([&] {
    auto writer = RingWriter::Open(Options(dead_name, 2, 4096));
    if (!writer.ok()) return 2;
    auto reader = RingReader::Attach(ReaderFor(dead_name, ReaderMode::kBroadcast));
    if (!reader.ok()) return 3;
    ::_exit(0);  // no destructors: as if killed
  });
  ASSERT_EQ(WaitChild(child), 0);
  // A segment a dead process was still creating (its pid in the name).
  const std::string half_path =
      "/dev/shm/zerodet-ring-" + half_made + std::to_string(static_cast<int>(child));
  {
    FILE* f = std::fopen(half_path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  auto live = RingWriter::Open(Options(live_name, 2, 4096));
  ASSERT_TRUE(live.ok());

  auto removed = RemoveStaleRings(prefix);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  std::sort(removed->begin(), removed->end());
  ASSERT_EQ(removed->size(), 2u);
  EXPECT_EQ((*removed)[0], dead_name);
  EXPECT_EQ((*removed)[1], half_made + std::to_string(static_cast<int>(child)));
  struct stat st;
  EXPECT_NE(::stat(("/dev/shm/zerodet-ring-" + dead_name).c_str(), &st), 0);
  EXPECT_EQ(::stat(("/dev/shm/zerodet-ring-" + live_name).c_str(), &st), 0);
}

TEST(RingMultiprocessTest, WriterReplacesADeadSegmentOfAnotherShape) {
  const std::string name = UniqueRingName("mp-reshape");
  const pid_t child = ForkChild([&] {
    auto writer = RingWriter::Open(Options(name, 2, 4096));
    if (!writer.ok()) return 2;
    ::_exit(0);
  });
  ASSERT_EQ(WaitChild(child), 0);
  auto writer = RingWriter::Open(Options(name, 5, 8192));
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  EXPECT_EQ((*writer)->slot_count(), 5);
  EXPECT_EQ((*writer)->slot_bytes(), 8192u);
  EXPECT_EQ((*writer)->Stats().writer_epoch, 1u);
}

}  // namespace
}  // namespace zerodet::ring
