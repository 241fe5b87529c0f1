// Wire protocol between store clients and the store (internal to src/store/).
//
// Transport: a SOCK_SEQPACKET Unix-domain socket, so every message arrives whole or not at all
// and no stream reassembly is needed. A message is a 12-byte header {magic, type, payload
// size} followed by the payload, at most kMaxMessageSize bytes in all. Integers are in host byte
// order (both ends are on one machine). The store parses every request with ParseRequest, which
// validates the length, counts and sizes before anything uses them: a malformed frame gives
// kCorruptData, never an out-of-bounds read. The file descriptors of the shared regions travel
// once, as SCM_RIGHTS ancillary data of the hello reply. A store that refuses a connection
// (not authorized, too many connections, out of descriptors) sends one hello reply with the
// reason, unasked, and closes: the client reads it in place of the reply to its hello.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/store/client.h"
#include "zerodet/store/object_id.h"

namespace zerodet::store::internal {

inline constexpr uint32_t kProtocolMagic = 0x5453445a;  // "ZDST"
inline constexpr uint32_t kProtocolVersion = 2;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxMessageSize = 64 * 1024;
inline constexpr uint32_t kMaxMetadataSize = 32 * 1024;
inline constexpr uint32_t kMaxIdsPerRequest = 1024;
inline constexpr uint32_t kListPageSize = 1024;

enum class MessageType : uint32_t {
  kHello = 1,   // version, access -> HelloReply + fds {arena (read-only), index, client region,
                // arena (writable; read-write clients only)}
  kCreate = 2,  // id, data_size, flags, metadata -> CreateReply
  kSeal = 3,    // id
  kAbort = 4,   // id
  kDelete = 5,  // ids
  kGet = 6,     // id, timeout_ms -> GetReply; the store takes the reference for the client
  kList = 7,    // cursor -> ListReply
  kStats = 8,   // -> StoreStats
};

// Create flags (a subset of EntryFlags in shm_layout.h); other bits are refused.
inline constexpr uint32_t kCreatePinned = 1;
inline constexpr uint32_t kKnownCreateFlags = kCreatePinned;

struct Request {
  MessageType type = MessageType::kHello;
  uint32_t protocol_version = 0;  // kHello
  uint32_t access = 0;            // kHello: a StoreAccess value
  ObjectId id;                    // kCreate, kSeal, kAbort, kGet
  uint64_t data_size = 0;         // kCreate
  uint32_t flags = 0;             // kCreate: kCreatePinned
  std::string metadata;           // kCreate
  std::vector<ObjectId> ids;      // kDelete
  int64_t timeout_ms = 0;         // kGet; < 0 waits forever
  uint32_t cursor = 0;            // kList: first handle to report
};

// Parses one received message. Errors: kCorruptData naming what is wrong (bad magic, size
// mismatch, unknown type, unknown access or create flags, count or size over the limits above).
Result<Request> ParseRequest(std::span<const uint8_t> message);
std::vector<uint8_t> SerializeRequest(const Request& request);

struct HelloReply {
  uint32_t entry_capacity = 0;  // the store's max_objects: sizes the index and client region
  uint32_t access = 0;          // the StoreAccess granted (what was asked for)
  uint64_t arena_size = 0;
  uint64_t arena_page_size = 0;  // writable mappings of objects start and end on these
  uint64_t client_region_size = 0;
};
struct CreateReply {
  uint64_t offset = 0;           // data offset in the arena
  uint64_t metadata_offset = 0;  // metadata offset in the arena
};
struct GetReply {
  uint32_t handle = 0;
  uint64_t offset = 0;
  uint64_t data_size = 0;
  uint32_t metadata_size = 0;
};
struct ListReply {
  std::vector<ObjectInfo> objects;
  uint32_t next_cursor = 0;  // 0 when the listing is complete
};

// Replies: header + {u32 status code, u32 message size, message, body}. A non-OK reply has no
// body. The client trusts the store, but parsing is still bounds-checked.
std::vector<uint8_t> SerializeReply(MessageType type, const Status& status,
                                    std::span<const uint8_t> body = {});
// Returns the reply's Status; on OK sets *body to the body bytes (a view into `message`).
Status ParseReply(std::span<const uint8_t> message, MessageType expected_type,
                  std::span<const uint8_t>* body);

std::vector<uint8_t> EncodeHelloReply(const HelloReply& reply);
Result<HelloReply> DecodeHelloReply(std::span<const uint8_t> body);
std::vector<uint8_t> EncodeCreateReply(const CreateReply& reply);
Result<CreateReply> DecodeCreateReply(std::span<const uint8_t> body);
std::vector<uint8_t> EncodeGetReply(const GetReply& reply);
Result<GetReply> DecodeGetReply(std::span<const uint8_t> body);
std::vector<uint8_t> EncodeListReply(const ListReply& reply);
Result<ListReply> DecodeListReply(std::span<const uint8_t> body);
std::vector<uint8_t> EncodeStats(const StoreStats& stats);
Result<StoreStats> DecodeStats(std::span<const uint8_t> body);

}  // namespace zerodet::store::internal
