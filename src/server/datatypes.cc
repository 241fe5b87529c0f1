// The KServe v2 datatype names (inference_service.h), apart from the service so that the body
// parsers and their fuzzer need nothing but core.
#include <string>

#include "zerodet/server/inference_service.h"

namespace zerodet::server {
namespace {

struct DatatypeName {
  DType dtype;
  std::string_view name;
};
constexpr DatatypeName kDatatypes[] = {
    {DType::kFloat32, "FP32"}, {DType::kFloat16, "FP16"}, {DType::kUInt8, "UINT8"},
    {DType::kInt8, "INT8"},    {DType::kInt32, "INT32"},  {DType::kInt64, "INT64"},
};

}  // namespace

Result<DType> ParseKServeDatatype(std::string_view name) {
  for (const DatatypeName& d : kDatatypes) {
    if (d.name == name) return d.dtype;
  }
  std::string known;
  for (const DatatypeName& d : kDatatypes)
    known += (known.empty() ? "" : ", ") + std::string(d.name);
  return InvalidArgumentError("datatype '" + std::string(name.substr(0, 32)) +
                              "' is not supported (supported: " + known + ")");
}

std::string_view KServeDatatype(DType dtype) {
  for (const DatatypeName& d : kDatatypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "FP32";
}

}  // namespace zerodet::server
