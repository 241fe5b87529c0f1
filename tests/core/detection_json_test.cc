#include "zerodet/core/detection_json.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zerodet {
namespace {

TEST(DetectionJsonTest, TheOneFormat) {
  const std::vector<std::string> names = {"person", "bicycle"};
  const std::vector<Detection> detections = {
      {1, 0.88734f, Box{131.214f, 136.567f, 568.691f, 420.009f}}, {7, 0.5f, Box{0, 0, 10, 10}}};
  EXPECT_EQ(
      ToJsonLine(DetectionsToJson(detections, names)),
      R"([{"class_id":1,"class":"bicycle","score":0.8873,"box":[131.21,136.57,568.69,420.01]},)"
      R"({"class_id":7,"class":"class7","score":0.5,"box":[0.0,0.0,10.0,10.0]}])");
}

TEST(DetectionJsonTest, ClassNames) {
  const std::vector<std::string> names = {"a"};
  EXPECT_EQ(ClassName(0, names), "a");
  EXPECT_EQ(ClassName(1, names), "class1");
  EXPECT_EQ(ClassName(-3, names), "class-3");
}

// Class names come from model files: invalid UTF-8 must not make the serializer throw.
TEST(DetectionJsonTest, InvalidUtf8IsReplacedNotThrown) {
  const std::vector<std::string> names = {std::string("bad\xff\xfename")};
  const std::string line =
      ToJsonLine(DetectionsToJson(std::vector<Detection>{{0, 1, Box{}}}, names));
  EXPECT_NE(line.find("bad\xef\xbf\xbd"), std::string::npos) << line;
  nlohmann::ordered_json object = {{"image", std::string("\xc3\x28.jpg")}};
  EXPECT_NO_THROW(ToJsonLine(object));
}

}  // namespace
}  // namespace zerodet
