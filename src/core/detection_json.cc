#include "zerodet/core/detection_json.h"

#include <cmath>

namespace zerodet {

std::string ClassName(int class_id, const std::vector<std::string>& names) {
  if (class_id >= 0 && static_cast<size_t>(class_id) < names.size()) {
    return names[static_cast<size_t>(class_id)];
  }
  return "class" + std::to_string(class_id);
}

double RoundTo(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

nlohmann::ordered_json DetectionToJson(const Detection& d, const std::vector<std::string>& names) {
  return {
      {"class_id", d.class_id},
      {"class", ClassName(d.class_id, names)},
      {"score", RoundTo(d.score, 4)},
      {"box",
       {RoundTo(d.box.x1, 2), RoundTo(d.box.y1, 2), RoundTo(d.box.x2, 2), RoundTo(d.box.y2, 2)}}};
}

nlohmann::ordered_json StageTimesToJson(double decode_ms, double preprocess_ms, double infer_ms,
                                        double postprocess_ms) {
  return {{"decode", RoundTo(decode_ms, 3)},
          {"preprocess", RoundTo(preprocess_ms, 3)},
          {"infer", RoundTo(infer_ms, 3)},
          {"postprocess", RoundTo(postprocess_ms, 3)}};
}

nlohmann::ordered_json DetectionsToJson(std::span<const Detection> detections,
                                        const std::vector<std::string>& names) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Detection& d : detections) list.push_back(DetectionToJson(d, names));
  return list;
}

std::string ToJsonLine(const nlohmann::ordered_json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace zerodet
