// The KServe v2 HTTP body formats: JSON and binary tensor data parse into the same request,
// every malformed or hostile body is a clear error (never an exception), and responses encode
// as the protocol says.
#include "kserve_http.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

namespace zerodet::server::detail {
namespace {

std::vector<float> Floats(std::span<const uint8_t> bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

TEST(KServeHttpTest, JsonAndBinaryTensorsParseAlike) {
  auto json = ParseInferRequest(
      R"({"id":"r1","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4.5]]},
                              {"name":"n","datatype":"INT64","shape":[1],"data":[-7]}],
          "outputs":[{"name":"y","parameters":{"binary_data":true}}]})",
      std::nullopt);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(json->request.id, "r1");
  ASSERT_EQ(json->request.inputs.size(), 2u);
  EXPECT_EQ(Floats(json->request.inputs[0].data), (std::vector<float>{1, 2, 3, 4.5f}));
  int64_t n = 0;
  std::memcpy(&n, json->request.inputs[1].data.data(), sizeof(n));
  EXPECT_EQ(n, -7);
  EXPECT_EQ(json->request.outputs, std::vector<std::string>{"y"});
  EXPECT_EQ(json->binary_outputs, std::vector<std::string>{"y"});

  const float values[] = {1, 2, 3, 4.5f};
  const std::string header =
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}})";
  std::string body = header;
  body.append(reinterpret_cast<const char*>(values), sizeof(values));
  auto binary = ParseInferRequest(body, header.size());
  ASSERT_TRUE(binary.ok()) << binary.status().ToString();
  EXPECT_TRUE(binary->binary_all_outputs);
  EXPECT_EQ(Floats(binary->request.inputs[0].data), (std::vector<float>{1, 2, 3, 4.5f}));
  // Zero copy: the tensor points into the body.
  EXPECT_EQ(reinterpret_cast<const char*>(binary->request.inputs[0].data.data()),
            body.data() + header.size());
}

TEST(KServeHttpTest, HostileBodiesAreErrors) {
  const std::vector<std::string> bad = {
      "",
      "null",
      "[]",
      "{",
      R"({"inputs":[]})",
      R"({"inputs":{}})",
      R"({"inputs":[1]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP99","shape":[1],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1,2]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":["a"]}]})",
      R"({"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[256]}]})",
      R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1.5]}]})",
      R"({"inputs":[{"name":"x","datatype":"INT64","shape":[1],"data":[18446744073709551615]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP16","shape":[1],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1099511627776,1099511627776],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"outputs":[{"name":"y"},{"name":"y"}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":-4}}]})",
      R"({"inputs":[{"name":1,"datatype":"FP32","shape":[1],"data":[1]}]})",
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":)" + std::string(5000, '[') +
          "1" + std::string(5000, ']') + "}]}",
      "{\"inputs\":[{\"name\":\"\xff\xfe\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
  };
  for (const std::string& body : bad) {
    auto parsed = ParseInferRequest(body, std::nullopt);
    EXPECT_FALSE(parsed.ok()) << body.substr(0, 120);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << body.substr(0, 120);
    }
  }
  // Binary sizes that do not add up to the body.
  const std::string header =
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]})";
  EXPECT_FALSE(ParseInferRequest(header + "abc", header.size()).ok());      // truncated
  EXPECT_FALSE(ParseInferRequest(header + "abcdefg", header.size()).ok());  // bytes left over
  EXPECT_FALSE(ParseInferRequest(header + "abcd", header.size() + 100).ok());
  EXPECT_TRUE(ParseInferRequest(header + "abcd", header.size()).ok());
}

TEST(KServeHttpTest, ResponsesInJsonAndBinary) {
  const float y[] = {0.5f, -1.0f};
  const uint8_t z[] = {1, 2, 3};
  const InferOutput outputs[] = {
      {"y", DType::kFloat32, {1, 2}, {reinterpret_cast<const uint8_t*>(y), sizeof(y)}},
      {"z", DType::kUInt8, {3}, {z, sizeof(z)}}};
  ParsedInferRequest asked;
  const EncodedResponse plain = EncodeInferResponse({"m", 3}, "id7", outputs, asked);
  EXPECT_FALSE(plain.header_length.has_value());
  const auto json = nlohmann::json::parse(plain.body);
  EXPECT_EQ(json["model_name"], "m");
  EXPECT_EQ(json["model_version"], "3");
  EXPECT_EQ(json["id"], "id7");
  EXPECT_EQ(json["outputs"][0]["data"], nlohmann::json::parse("[0.5,-1.0]"));
  EXPECT_EQ(json["outputs"][1]["datatype"], "UINT8");
  EXPECT_EQ(json["outputs"][1]["data"], nlohmann::json::parse("[1,2,3]"));

  asked.binary_outputs = {"y"};
  const EncodedResponse mixed = EncodeInferResponse({"m", 3}, "", outputs, asked);
  ASSERT_TRUE(mixed.header_length.has_value());
  const auto header = nlohmann::json::parse(mixed.body.substr(0, *mixed.header_length));
  EXPECT_EQ(header["outputs"][0]["parameters"]["binary_data_size"], 8);
  EXPECT_FALSE(header["outputs"][0].contains("data"));
  EXPECT_EQ(mixed.body.size(), *mixed.header_length + sizeof(y));
  EXPECT_EQ(std::memcmp(mixed.body.data() + *mixed.header_length, y, sizeof(y)), 0);
}

TEST(KServeHttpTest, HalfFloats) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 5.9604644775390625e-08f);  // smallest subnormal
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
}

}  // namespace
}  // namespace zerodet::server::detail
