// Paths of the models and images the infer tests use: the real ones in ../shared and the small
// ones tests/infer/make_test_models.py writes at test time.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_support.h"

namespace zerodet::testing {

// The Python interpreter with the onnx package: $ZERODET_PYTHON, else Debian's /usr/bin/python3
// (python3-onnx), else python3 from PATH.
inline std::string PythonWithOnnx() {
  if (const char* env = std::getenv("ZERODET_PYTHON")) return env;
  if (std::filesystem::exists("/usr/bin/python3")) return "/usr/bin/python3";
  return "python3";
}

struct GeneratedModels {
  bool have_onnx = false;  // python3 can import onnx
  bool ok = false;         // make_test_models.py succeeded
  std::filesystem::path dir;
};

// The generated models, written once per test process (CTest runs test cases as separate
// processes, possibly in parallel, so each process gets its own directory, removed at exit).
inline const GeneratedModels& Generated() {
  static const GeneratedModels models = [] {
    GeneratedModels m;
    const std::string python = PythonWithOnnx();
    m.have_onnx = std::system((python + " -c 'import onnx' >/dev/null 2>&1").c_str()) == 0;
    if (!m.have_onnx) return m;
    m.dir = std::filesystem::temp_directory_path() /
            ("zerodet_infer_models_" + std::to_string(::getpid()));
    const std::string script = std::string(ZERODET_SOURCE_DIR) + "/tests/infer/make_test_models.py";
    m.ok = std::system((python + " '" + script + "' '" + m.dir.string() + "'").c_str()) == 0;
    static struct Cleanup {
      std::filesystem::path path;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
      }
    } cleanup{m.dir};
    return m;
  }();
  return models;
}

inline std::filesystem::path GeneratedModel(const std::string& name) {
  return Generated().dir / name;
}

}  // namespace zerodet::testing

// Skips the current test when python3-onnx is missing; fails it when the generator fails.
#define ZD_REQUIRE_GENERATED_MODELS()                                                       \
  do {                                                                                      \
    if (!::zerodet::testing::Generated().have_onnx) {                                       \
      GTEST_SKIP() << "python3 with the onnx package is needed (apt install python3-onnx)"; \
    }                                                                                       \
    ASSERT_TRUE(::zerodet::testing::Generated().ok) << "make_test_models.py failed";        \
  } while (0)
