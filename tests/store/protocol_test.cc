#include "protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace zerodet::store::internal {
namespace {

Request RoundTrip(const Request& request) {
  auto parsed = ParseRequest(SerializeRequest(request));
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? *parsed : Request{};
}

TEST(ProtocolTest, RequestsRoundTrip) {
  Request create;
  create.type = MessageType::kCreate;
  create.id = ObjectId::FromName("a");
  create.data_size = 12345;
  create.metadata = std::string("\x00shape\xff", 7);
  Request parsed = RoundTrip(create);
  EXPECT_EQ(parsed.type, MessageType::kCreate);
  EXPECT_EQ(parsed.id, create.id);
  EXPECT_EQ(parsed.data_size, 12345u);
  EXPECT_EQ(parsed.metadata, create.metadata);

  Request del;
  del.type = MessageType::kDelete;
  del.ids = {ObjectId::FromName("1"), ObjectId::FromName("2")};
  EXPECT_EQ(RoundTrip(del).ids, del.ids);

  Request get;
  get.type = MessageType::kGet;
  get.id = ObjectId::FromName("g");
  get.timeout_ms = -1;
  EXPECT_EQ(RoundTrip(get).timeout_ms, -1);

  Request list;
  list.type = MessageType::kList;
  list.cursor = 77;
  EXPECT_EQ(RoundTrip(list).cursor, 77u);

  Request hello;
  hello.type = MessageType::kHello;
  hello.protocol_version = kProtocolVersion;
  hello.access = static_cast<uint32_t>(StoreAccess::kReadOnly);
  EXPECT_EQ(RoundTrip(hello).access, hello.access);

  create.flags = kCreatePinned;
  EXPECT_EQ(RoundTrip(create).flags, kCreatePinned);
}

TEST(ProtocolTest, HelloAccessAndCreateFlagsAreChecked) {
  Request hello;
  hello.type = MessageType::kHello;
  hello.protocol_version = kProtocolVersion;
  hello.access = 7;
  auto parsed = ParseRequest(SerializeRequest(hello));
  EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData);
  // A version-1 client sends only its version: it parses, so the store can tell it to upgrade.
  Request old_hello;
  old_hello.type = MessageType::kHello;
  old_hello.protocol_version = 1;
  parsed = ParseRequest(SerializeRequest(old_hello));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->protocol_version, 1u);

  Request create;
  create.type = MessageType::kCreate;
  create.flags = 2;
  parsed = ParseRequest(SerializeRequest(create));
  EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(parsed.status().message().find("create flags"), std::string::npos);
}

std::vector<uint8_t> Valid(MessageType type) {
  Request request;
  request.type = type;
  request.id = ObjectId::FromName("x");
  request.ids = {request.id};
  return SerializeRequest(request);
}

void ExpectCorrupt(const std::vector<uint8_t>& message, const std::string& needle) {
  auto parsed = ParseRequest(message);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(parsed.status().message().find(needle), std::string::npos) << parsed.status().message();
}

void SetU32(std::vector<uint8_t>& m, size_t at, uint32_t v) {
  std::memcpy(&m[at], &v, 4);
}

TEST(ProtocolTest, RejectsMalformedFrames) {
  ExpectCorrupt({1, 2, 3}, "shorter than");
  auto bad_magic = Valid(MessageType::kSeal);
  bad_magic[0] ^= 1;
  ExpectCorrupt(bad_magic, "bad magic");
  auto bad_size = Valid(MessageType::kSeal);
  SetU32(bad_size, 8, 1000);
  ExpectCorrupt(bad_size, "announces 1000");
  auto bad_type = Valid(MessageType::kStats);
  SetU32(bad_type, 4, 99);
  ExpectCorrupt(bad_type, "unknown message type 99");
  auto truncated = Valid(MessageType::kSeal);
  truncated.resize(truncated.size() - 1);
  SetU32(truncated, 8, static_cast<uint32_t>(truncated.size() - kHeaderSize));
  ExpectCorrupt(truncated, "truncated");
  auto trailing = Valid(MessageType::kStats);
  trailing.push_back(0);
  SetU32(trailing, 8, 1);
  ExpectCorrupt(trailing, "trailing");
  ExpectCorrupt(std::vector<uint8_t>(kMaxMessageSize + 1), "exceeds");
}

TEST(ProtocolTest, RejectsBadCountsAndSizes) {
  Request create;
  create.type = MessageType::kCreate;
  create.metadata.assign(kMaxMetadataSize + 1, 'm');
  ExpectCorrupt(SerializeRequest(create), "metadata of 32769 bytes");

  auto zero_ids = Valid(MessageType::kDelete);
  SetU32(zero_ids, kHeaderSize, 0);
  ExpectCorrupt(zero_ids, "delete of 0 ids");
  auto many_ids = Valid(MessageType::kDelete);
  SetU32(many_ids, kHeaderSize, 1u << 30);
  ExpectCorrupt(many_ids, "delete of 1073741824 ids");
  auto short_ids = Valid(MessageType::kDelete);
  SetU32(short_ids, kHeaderSize, 2);
  ExpectCorrupt(short_ids, "announces 2 ids");
}

// Random mutations of valid frames: the parser must return (OK or kCorruptData), never crash or
// read out of bounds (ASan checks the latter). The libFuzzer target runs the same longer.
TEST(ProtocolTest, SurvivesRandomMutations) {
  std::mt19937 rng(1);
  int corrupt = 0;
  for (int i = 0; i < 20000; ++i) {
    auto message = Valid(static_cast<MessageType>(1 + rng() % 8));
    const int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 3) {
        case 0:
          message[rng() % message.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:
          message.resize(rng() % (message.size() + 1));
          break;
        default:
          message.push_back(static_cast<uint8_t>(rng()));
      }
      if (message.empty()) message.push_back(0);
    }
    auto parsed = ParseRequest(message);
    if (!parsed.ok()) {
      ASSERT_EQ(parsed.status().code(), StatusCode::kCorruptData);
      ++corrupt;
    }
  }
  EXPECT_GT(corrupt, 10000);
}

TEST(ProtocolTest, RepliesCarryStatusAndBody) {
  StoreStats stats;
  stats.capacity = 99;
  stats.evictions = 3;
  auto message = SerializeReply(MessageType::kStats, Status::Ok(), EncodeStats(stats));
  std::span<const uint8_t> body;
  ASSERT_TRUE(ParseReply(message, MessageType::kStats, &body).ok());
  auto decoded = DecodeStats(body);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->capacity, 99u);
  EXPECT_EQ(decoded->evictions, 3u);

  auto error = SerializeReply(MessageType::kCreate, ResourceExhaustedError("store full: x"));
  Status status = ParseReply(error, MessageType::kCreate, &body);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "store full: x");
  EXPECT_EQ(ParseReply(error, MessageType::kGet, &body).code(), StatusCode::kCorruptData);

  ListReply list;
  list.next_cursor = 5;
  list.objects.push_back({ObjectId::FromName("o"), 10, 2, true, false});
  auto decoded_list = DecodeListReply(EncodeListReply(list));
  ASSERT_TRUE(decoded_list.ok());
  ASSERT_EQ(decoded_list->objects.size(), 1u);
  EXPECT_EQ(decoded_list->objects[0].data_size, 10u);
  EXPECT_TRUE(decoded_list->objects[0].sealed);
  EXPECT_EQ(decoded_list->next_cursor, 5u);
}

}  // namespace
}  // namespace zerodet::store::internal
