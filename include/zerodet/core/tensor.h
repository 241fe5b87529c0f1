// TensorView and ConstTensorView: non-owning views of a dense, row-major tensor in someone
// else's memory (a session output, a store object, a shared-memory region). The viewer keeps
// that memory alive. ConstTensorView is the read-only one: model inputs, sealed store objects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zerodet {

enum class DType : uint8_t { kFloat32, kFloat16, kUInt8, kInt8, kInt32, kInt64 };

size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // row-major, all dims >= 0

  // REQUIRES: the product of the dimensions fits in size_t (see CheckedElementCount).
  size_t num_elements() const;
  size_t size_bytes() const { return num_elements() * DTypeSize(dtype); }
  // REQUIRES: dtype == kFloat32.
  float* f32() const { return static_cast<float*>(data); }
};

// A read-only tensor view. A TensorView converts to it implicitly.
struct ConstTensorView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // row-major, all dims >= 0

  ConstTensorView() = default;
  ConstTensorView(const void* d, DType t, std::vector<int64_t> s)
      : data(d), dtype(t), shape(std::move(s)) {}
  ConstTensorView(const TensorView& view)  // NOLINT: a mutable view is also a read-only one
      : data(view.data), dtype(view.dtype), shape(view.shape) {}

  // REQUIRES: the product of the dimensions fits in size_t (see CheckedElementCount).
  size_t num_elements() const;
  size_t size_bytes() const { return num_elements() * DTypeSize(dtype); }
  // REQUIRES: dtype == kFloat32.
  const float* f32() const { return static_cast<const float*>(data); }
};

// The number of elements of `shape`, or nullopt when a dimension is negative (dynamic) or the
// product does not fit in 64 bits: the check for shapes that come from a model file or a peer.
std::optional<uint64_t> CheckedElementCount(const std::vector<int64_t>& shape);

// "1x84x8400"; dynamic dimensions (< 0) print as "?".
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace zerodet
