// Helpers shared by the codec tests: shared-data paths and OpenCV reference decoding.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "zerodet/core/file.h"
#include "zerodet/core/image.h"

namespace zerodet::testing {

inline std::filesystem::path SharedImage(const std::string& name) {
  return std::filesystem::path(ZERODET_SHARED_DIR) / "images" / name;
}

inline std::vector<uint8_t> ReadOrDie(const std::filesystem::path& path) {
  auto bytes = ReadFileBytes(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? std::move(*bytes) : std::vector<uint8_t>{};
}

inline std::vector<uint8_t> Encode(const std::string& ext, const cv::Mat& mat,
                                   const std::vector<int>& params = {}) {
  std::vector<uint8_t> out;
  EXPECT_TRUE(cv::imencode(ext, mat, out, params));
  return out;
}

// What cv::imread(IMREAD_COLOR) gives, as RGB: the reference pipeline's decoder.
inline cv::Mat ReferenceRgb(const std::vector<uint8_t>& bytes) {
  cv::Mat bgr = cv::imdecode(bytes, cv::IMREAD_COLOR);
  cv::Mat rgb;
  if (!bgr.empty()) cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

inline cv::Mat AsMat(const ImageView& view) {
  return cv::Mat(view.height, view.width, CV_8UC(view.channels()), const_cast<uint8_t*>(view.data),
                 view.stride);
}

// Number of differing bytes between two images of the same geometry (-1 if geometry differs).
inline int64_t DifferentBytes(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) return -1;
  cv::Mat diff;
  cv::compare(a.reshape(1), b.reshape(1), diff, cv::CMP_NE);
  return cv::countNonZero(diff);
}

}  // namespace zerodet::testing
