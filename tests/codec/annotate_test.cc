#include "zerodet/codec/annotate.h"

#include "codec_test_util.h"
#include "zerodet/codec/decode.h"

namespace zerodet {
namespace {

TEST(Annotate, WritesAJpegWithBoxesDrawn) {
  auto decoded = DecodeImageFile(testing::SharedImage("dog.jpg"));
  ASSERT_TRUE(decoded.ok());
  const ImageView view = decoded->image.view();
  const std::vector<Detection> detections = {{16, 0.95f, Box{130, 220, 310, 540}},
                                             {2, 0.6f, Box{460, 70, 690, 170}}};
  const auto path = std::filesystem::temp_directory_path() / "zerodet_annotate_test.jpg";
  ASSERT_TRUE(WriteAnnotatedJpeg(view, detections, Coco80Names(), path).ok());

  auto written = DecodeImageFile(path);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(written->image.width(), view.width);
  EXPECT_EQ(written->image.height(), view.height);
  // Along a box edge the image changed (the line is drawn); away from boxes it is unchanged up
  // to JPEG re-encoding error.
  const cv::Mat before = testing::AsMat(view);
  const cv::Mat after = testing::AsMat(written->image.view());
  const cv::Rect edge(128, 380, 5, 60), away(700, 400, 40, 40);
  cv::Mat edge_diff, away_diff;
  cv::absdiff(before(edge), after(edge), edge_diff);
  cv::absdiff(before(away), after(away), away_diff);
  EXPECT_GT(cv::mean(edge_diff)[0] + cv::mean(edge_diff)[1] + cv::mean(edge_diff)[2], 90);
  EXPECT_LT(cv::mean(away_diff)[0] + cv::mean(away_diff)[1] + cv::mean(away_diff)[2], 15);
  std::filesystem::remove(path);
}

TEST(Annotate, UnwritablePathIsAnErrorNamingIt) {
  cv::Mat rgb(16, 16, CV_8UC3, cv::Scalar(0));
  const ImageView view{rgb.data, 16, 16, rgb.step, PixelFormat::kRGB8};
  const Status status = WriteAnnotatedJpeg(view, {}, {}, "/nonexistent/dir/out.jpg");
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_NE(status.message().find("/nonexistent/dir/out.jpg"), std::string::npos);
}

}  // namespace
}  // namespace zerodet
