#include "zerodet/models/graph_cache.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "zerodet/core/file.h"
#include "zerodet/infer/backend.h"

namespace zerodet {
namespace {

using FileKey = std::tuple<uint64_t, uint64_t, int64_t, int64_t>;  // dev, inode, size, mtime

std::string Hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

// A short tag of this CPU's feature flags (the first "flags" line of /proc/cpuinfo).
const std::string& CpuTag() {
  static const std::string tag = [] {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("flags", 0) == 0) {
        char buffer[17];
        std::snprintf(buffer, sizeof(buffer), "%016zx", std::hash<std::string>{}(line));
        return std::string(buffer, 8);
      }
    }
    return std::string("nocpuid");
  }();
  return tag;
}

}  // namespace

Result<std::string> FileSha256(const std::filesystem::path& path) {
  static std::mutex mu;
  static std::map<std::pair<std::string, FileKey>, std::string> memo;
  ZD_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return PathError(path, "cannot stat", errno);
  const auto key = std::make_pair(
      path.string(),
      FileKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
              static_cast<int64_t>(st.st_size),
              static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
  {
    std::lock_guard lock(mu);
    if (auto it = memo.find(key); it != memo.end()) return it->second;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return InternalError("cannot start SHA-256");
  }
  std::vector<unsigned char> buffer(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(path, "cannot read", errno);
    }
    if (n == 0) break;
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(n));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(context.get(), digest, &size);
  std::string hex = Hex(digest, size);
  std::lock_guard lock(mu);
  memo[key] = hex;
  return hex;
}

Result<std::filesystem::path> OptimizedGraphPath(const std::filesystem::path& cache_dir,
                                                 const std::filesystem::path& model_path,
                                                 const ModelConfig& config) {
  ZD_ASSIGN_OR_RETURN(std::string sha, FileSha256(model_path));
  std::error_code error;
  std::filesystem::create_directories(cache_dir, error);
  if (error) return PathError(cache_dir, "cannot create the graph cache", error.value());
  const std::string provider(ExecutionProviderName(config.provider));
  const std::string name = sha.substr(0, 32) + "-ort" + OnnxRuntimeVersion() + "-" + provider +
                           "-o" + std::to_string(config.graph_optimization_level) + "-" + CpuTag() +
                           ".onnx";
  return cache_dir / name;
}

}  // namespace zerodet
