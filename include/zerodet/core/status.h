// Status and Result<T>: error values returned across every zerodet module boundary.
//
// A Status is either OK or carries a code and a message a user can act on: it names the file,
// model or limit involved ("dog.jpg: truncated JPEG data", "store full: need 8 MiB, 2 MiB free").
// No zerodet API throws across a module boundary; functions that can fail return Status or
// Result<T>. Both are plain values: copyable, movable, safe to use from any thread (as values;
// concurrent mutation of one object needs external synchronization, like any std type).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace zerodet {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller passed something malformed (bad shape, bad flag)
  kNotFound,            // a file, model, object or key does not exist
  kAlreadyExists,       // e.g. an object ID that is already in the store
  kCorruptData,         // input bytes that cannot be parsed (truncated JPEG, bad protocol frame)
  kResourceExhausted,   // a limit was hit: pixel limit, store full, queue full
  kFailedPrecondition,  // the system is not in a state for the call (object not sealed, ...)
  kUnimplemented,       // valid request the build cannot serve (e.g. CUDA EP missing)
  kUnavailable,         // a peer is gone or not reachable (store restarted, socket closed)
  kDeadlineExceeded,    // a timeout expired
  kPermissionDenied,
  kIoError,   // the operating system reported an error
  kInternal,  // a bug or an error from a dependency that fits nothing above
};

// Short lower-case name of a code, e.g. "not found".
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  // An OK status.
  Status() = default;
  // REQUIRES: code != kOk (use Status() for success).
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {
    assert(code != StatusCode::kOk);
  }

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "ok", or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status CorruptDataError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status UnimplementedError(std::string message);
Status UnavailableError(std::string message);
Status DeadlineExceededError(std::string message);
Status PermissionDeniedError(std::string message);
Status IoError(std::string message);
Status InternalError(std::string message);
// An IoError whose message ends with strerror(errno_value).
Status ErrnoError(std::string message, int errno_value);

// Either a value of type T or a non-OK Status (in the spirit of absl::StatusOr).
template <typename T>
class [[nodiscard]] Result {
 public:
  // REQUIRES: !status.ok().
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT
  Result(T value) : value_(std::move(value)) {}                                  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace zerodet

// Returns early from the enclosing function when `expr` (a Status) is not OK.
#define ZD_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::zerodet::Status zd_status_ = (expr);   \
    if (!zd_status_.ok()) return zd_status_; \
  } while (0)

#define ZD_CONCAT_INNER_(a, b) a##b
#define ZD_CONCAT_(a, b) ZD_CONCAT_INNER_(a, b)
#define ZD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

// `ZD_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result, or returns its error.
#define ZD_ASSIGN_OR_RETURN(lhs, expr) \
  ZD_ASSIGN_OR_RETURN_IMPL_(ZD_CONCAT_(zd_result_, __LINE__), lhs, expr)
