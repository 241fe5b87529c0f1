#include "protocol.h"

#include <fmt/format.h>

#include <cstring>

namespace zerodet::store::internal {
namespace {

// Appends plain values to a message.
class Writer {
 public:
  template <typename T>
  void Put(const T& value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  void PutBytes(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + size);
  }
  void PutId(const ObjectId& id) { PutBytes(id.bytes.data(), id.bytes.size()); }
  std::vector<uint8_t> Finish() { return std::move(bytes_); }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Reads plain values; every read is bounds-checked and failure is sticky.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* value) {
    if (bytes_.size() - pos_ < sizeof(T)) return ok_ = false;
    std::memcpy(value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return ok_;
  }
  bool GetBytes(size_t size, std::span<const uint8_t>* out) {
    if (bytes_.size() - pos_ < size) return ok_ = false;
    *out = bytes_.subspan(pos_, size);
    pos_ += size;
    return ok_;
  }
  bool GetId(ObjectId* id) {
    std::span<const uint8_t> raw;
    if (!GetBytes(ObjectId::kSize, &raw)) return false;
    std::memcpy(id->bytes.data(), raw.data(), ObjectId::kSize);
    return true;
  }
  bool ok() const { return ok_; }
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void PutHeader(Writer& w, MessageType type) {
  w.Put(kProtocolMagic);
  w.Put(static_cast<uint32_t>(type));
  w.Put(uint32_t{0});  // payload size, patched by Seal()
}

std::vector<uint8_t> FinishMessage(Writer& w) {
  std::vector<uint8_t> bytes = w.Finish();
  const auto payload = static_cast<uint32_t>(bytes.size() - kHeaderSize);
  std::memcpy(bytes.data() + 8, &payload, sizeof(payload));
  return bytes;
}

Status Corrupt(std::string what) {
  return CorruptDataError("store protocol: " + what);
}

// Validates the header; returns the type and sets *payload.
Status ParseHeader(std::span<const uint8_t> message, uint32_t* type,
                   std::span<const uint8_t>* payload) {
  if (message.size() < kHeaderSize) {
    return Corrupt(fmt::format("message of {} bytes is shorter than the {}-byte header",
                               message.size(), kHeaderSize));
  }
  if (message.size() > kMaxMessageSize) {
    return Corrupt(fmt::format("message of {} bytes exceeds the {}-byte limit", message.size(),
                               kMaxMessageSize));
  }
  uint32_t magic = 0, size = 0;
  std::memcpy(&magic, message.data(), 4);
  std::memcpy(type, message.data() + 4, 4);
  std::memcpy(&size, message.data() + 8, 4);
  if (magic != kProtocolMagic) return Corrupt(fmt::format("bad magic {:#010x}", magic));
  if (size != message.size() - kHeaderSize) {
    return Corrupt(fmt::format("header announces {} payload bytes, message has {}", size,
                               message.size() - kHeaderSize));
  }
  *payload = message.subspan(kHeaderSize);
  return Status::Ok();
}

}  // namespace

Result<Request> ParseRequest(std::span<const uint8_t> message) {
  uint32_t type = 0;
  std::span<const uint8_t> payload;
  ZD_RETURN_IF_ERROR(ParseHeader(message, &type, &payload));
  Reader r(payload);
  Request request;
  request.type = static_cast<MessageType>(type);
  switch (request.type) {
    case MessageType::kHello:
      r.Get(&request.protocol_version);
      // Older clients send only their version; the store answers them with a version error.
      if (r.remaining() > 0) r.Get(&request.access);
      if (r.ok() && request.protocol_version == kProtocolVersion &&
          request.access != static_cast<uint32_t>(StoreAccess::kReadOnly) &&
          request.access != static_cast<uint32_t>(StoreAccess::kReadWrite)) {
        return Corrupt(fmt::format("unknown access {} in hello", request.access));
      }
      break;
    case MessageType::kCreate: {
      uint32_t metadata_size = 0;
      r.GetId(&request.id);
      r.Get(&request.data_size);
      r.Get(&request.flags);
      r.Get(&metadata_size);
      if (!r.ok()) break;
      if ((request.flags & ~kKnownCreateFlags) != 0) {
        return Corrupt(fmt::format("unknown create flags {:#x}", request.flags));
      }
      if (metadata_size > kMaxMetadataSize) {
        return Corrupt(fmt::format("metadata of {} bytes exceeds the {}-byte limit", metadata_size,
                                   kMaxMetadataSize));
      }
      std::span<const uint8_t> metadata;
      if (r.GetBytes(metadata_size, &metadata))
        request.metadata.assign(metadata.begin(), metadata.end());
      break;
    }
    case MessageType::kSeal:
    case MessageType::kAbort:
      r.GetId(&request.id);
      break;
    case MessageType::kDelete: {
      uint32_t count = 0;
      if (!r.Get(&count)) break;
      if (count == 0 || count > kMaxIdsPerRequest) {
        return Corrupt(
            fmt::format("delete of {} ids (allowed: 1 to {})", count, kMaxIdsPerRequest));
      }
      if (r.remaining() != uint64_t{count} * ObjectId::kSize) {
        return Corrupt(
            fmt::format("delete announces {} ids but carries {} bytes", count, r.remaining()));
      }
      request.ids.resize(count);
      for (auto& id : request.ids) r.GetId(&id);
      break;
    }
    case MessageType::kGet:
      r.GetId(&request.id);
      r.Get(&request.timeout_ms);
      break;
    case MessageType::kList:
      r.Get(&request.cursor);
      break;
    case MessageType::kStats:
      break;
    default:
      return Corrupt(fmt::format("unknown message type {}", type));
  }
  if (!r.ok()) return Corrupt(fmt::format("truncated message of type {}", type));
  if (r.remaining() != 0) {
    return Corrupt(
        fmt::format("{} trailing bytes after a message of type {}", r.remaining(), type));
  }
  return request;
}

std::vector<uint8_t> SerializeRequest(const Request& request) {
  Writer w;
  PutHeader(w, request.type);
  switch (request.type) {
    case MessageType::kHello:
      w.Put(request.protocol_version);
      if (request.access != 0 || request.protocol_version == kProtocolVersion) {
        w.Put(request.access);
      }
      break;
    case MessageType::kCreate:
      w.PutId(request.id);
      w.Put(request.data_size);
      w.Put(request.flags);
      w.Put(static_cast<uint32_t>(request.metadata.size()));
      w.PutBytes(request.metadata.data(), request.metadata.size());
      break;
    case MessageType::kSeal:
    case MessageType::kAbort:
      w.PutId(request.id);
      break;
    case MessageType::kDelete:
      w.Put(static_cast<uint32_t>(request.ids.size()));
      for (const auto& id : request.ids) w.PutId(id);
      break;
    case MessageType::kGet:
      w.PutId(request.id);
      w.Put(request.timeout_ms);
      break;
    case MessageType::kList:
      w.Put(request.cursor);
      break;
    case MessageType::kStats:
      break;
  }
  return FinishMessage(w);
}

std::vector<uint8_t> SerializeReply(MessageType type, const Status& status,
                                    std::span<const uint8_t> body) {
  Writer w;
  PutHeader(w, type);
  w.Put(static_cast<uint32_t>(status.code()));
  // Keep replies under the message limit whatever the error text.
  const std::string message = status.message().substr(0, 4096);
  w.Put(static_cast<uint32_t>(message.size()));
  w.PutBytes(message.data(), message.size());
  if (status.ok()) w.PutBytes(body.data(), body.size());
  return FinishMessage(w);
}

Status ParseReply(std::span<const uint8_t> message, MessageType expected_type,
                  std::span<const uint8_t>* body) {
  uint32_t type = 0;
  std::span<const uint8_t> payload;
  ZD_RETURN_IF_ERROR(ParseHeader(message, &type, &payload));
  if (type != static_cast<uint32_t>(expected_type)) {
    return Corrupt(fmt::format("reply of type {} to a request of type {}", type,
                               static_cast<uint32_t>(expected_type)));
  }
  Reader r(payload);
  uint32_t code = 0, message_size = 0;
  std::span<const uint8_t> text;
  if (!r.Get(&code) || !r.Get(&message_size) || !r.GetBytes(message_size, &text)) {
    return Corrupt("truncated reply");
  }
  if (code > static_cast<uint32_t>(StatusCode::kInternal)) {
    return Corrupt(fmt::format("reply with unknown status code {}", code));
  }
  if (code != 0) {
    return Status(static_cast<StatusCode>(code), std::string(text.begin(), text.end()));
  }
  r.GetBytes(r.remaining(), body);
  return Status::Ok();
}

namespace {

template <typename T>
std::vector<uint8_t> EncodePod(const T& value) {
  Writer w;
  w.Put(value);
  return w.Finish();
}

}  // namespace

std::vector<uint8_t> EncodeHelloReply(const HelloReply& reply) {
  Writer w;
  w.Put(reply.entry_capacity);
  w.Put(reply.access);
  w.Put(reply.arena_size);
  w.Put(reply.arena_page_size);
  w.Put(reply.client_region_size);
  return w.Finish();
}

Result<HelloReply> DecodeHelloReply(std::span<const uint8_t> body) {
  Reader r(body);
  HelloReply reply;
  if (!r.Get(&reply.entry_capacity) || !r.Get(&reply.access) || !r.Get(&reply.arena_size) ||
      !r.Get(&reply.arena_page_size) || !r.Get(&reply.client_region_size) || r.remaining() != 0) {
    return Corrupt("malformed hello reply");
  }
  return reply;
}

std::vector<uint8_t> EncodeCreateReply(const CreateReply& reply) {
  Writer w;
  w.Put(reply.offset);
  w.Put(reply.metadata_offset);
  return w.Finish();
}

Result<CreateReply> DecodeCreateReply(std::span<const uint8_t> body) {
  Reader r(body);
  CreateReply reply;
  if (!r.Get(&reply.offset) || !r.Get(&reply.metadata_offset) || r.remaining() != 0) {
    return Corrupt("malformed create reply");
  }
  return reply;
}

std::vector<uint8_t> EncodeGetReply(const GetReply& reply) {
  Writer w;
  w.Put(reply.handle);
  w.Put(reply.offset);
  w.Put(reply.data_size);
  w.Put(reply.metadata_size);
  return w.Finish();
}

Result<GetReply> DecodeGetReply(std::span<const uint8_t> body) {
  Reader r(body);
  GetReply reply;
  if (!r.Get(&reply.handle) || !r.Get(&reply.offset) || !r.Get(&reply.data_size) ||
      !r.Get(&reply.metadata_size) || r.remaining() != 0) {
    return Corrupt("malformed get reply");
  }
  return reply;
}

std::vector<uint8_t> EncodeListReply(const ListReply& reply) {
  Writer w;
  w.Put(reply.next_cursor);
  w.Put(static_cast<uint32_t>(reply.objects.size()));
  for (const auto& info : reply.objects) {
    w.PutId(info.id);
    w.Put(info.data_size);
    w.Put(info.metadata_size);
    w.Put(static_cast<uint8_t>(info.sealed));
    w.Put(static_cast<uint8_t>(info.pending_delete));
    w.Put(static_cast<uint8_t>(info.pinned));
  }
  return w.Finish();
}

Result<ListReply> DecodeListReply(std::span<const uint8_t> body) {
  Reader r(body);
  ListReply reply;
  uint32_t count = 0;
  if (!r.Get(&reply.next_cursor) || !r.Get(&count) || count > kListPageSize) {
    return Corrupt("malformed list reply");
  }
  reply.objects.resize(count);
  for (auto& info : reply.objects) {
    uint8_t sealed = 0, pending = 0, pinned = 0;
    r.GetId(&info.id);
    r.Get(&info.data_size);
    r.Get(&info.metadata_size);
    r.Get(&sealed);
    r.Get(&pending);
    r.Get(&pinned);
    info.sealed = sealed != 0;
    info.pending_delete = pending != 0;
    info.pinned = pinned != 0;
  }
  if (!r.ok() || r.remaining() != 0) return Corrupt("malformed list reply");
  return reply;
}

std::vector<uint8_t> EncodeStats(const StoreStats& stats) {
  return EncodePod(stats);
}

Result<StoreStats> DecodeStats(std::span<const uint8_t> body) {
  Reader r(body);
  StoreStats stats;
  if (!r.Get(&stats) || r.remaining() != 0) return Corrupt("malformed stats reply");
  return stats;
}

}  // namespace zerodet::store::internal
