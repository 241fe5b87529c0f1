#include "zerodet/models/memory_probe.h"

#include <dirent.h>
#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <string>

namespace zerodet {
namespace {

// The CUDA runtime's entry points the probe needs, resolved once.
struct CudaRuntime {
  using SetDevice = int (*)(int);
  using MemGetInfo = int (*)(size_t*, size_t*);
  SetDevice set_device = nullptr;
  MemGetInfo mem_get_info = nullptr;
  std::string error;
};

const CudaRuntime& Cuda() {
  static const CudaRuntime runtime = [] {
    CudaRuntime r;
    void* library = nullptr;
    for (const char* name : {"libcudart.so", "libcudart.so.13", "libcudart.so.12"}) {
      library = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (library) break;
    }
    if (!library) {
      r.error = "the CUDA runtime (libcudart) is not installed";
      return r;
    }
    r.set_device = reinterpret_cast<CudaRuntime::SetDevice>(::dlsym(library, "cudaSetDevice"));
    r.mem_get_info = reinterpret_cast<CudaRuntime::MemGetInfo>(::dlsym(library, "cudaMemGetInfo"));
    if (!r.set_device || !r.mem_get_info) r.error = "libcudart lacks cudaMemGetInfo";
    return r;
  }();
  return runtime;
}

}  // namespace

Result<uint64_t> ProcessResidentBytes() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (!file) return IoError("cannot read /proc/self/statm");
  unsigned long size = 0;
  unsigned long resident = 0;
  const int fields = std::fscanf(file, "%lu %lu", &size, &resident);
  std::fclose(file);
  if (fields != 2) return IoError("cannot parse /proc/self/statm");
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

Result<int> ProcessThreadCount() {
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return IoError("cannot read /proc/self/task");
  int count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count;
}

void ReleaseFreedMemoryToSystem() {
  ::malloc_trim(0);
}

Result<uint64_t> GpuUsedBytes(int device) {
  const CudaRuntime& cuda = Cuda();
  if (!cuda.error.empty()) return UnavailableError(cuda.error);
  if (cuda.set_device(device) != 0) {
    return UnavailableError("cudaSetDevice(" + std::to_string(device) + ") failed");
  }
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  if (cuda.mem_get_info(&free_bytes, &total_bytes) != 0) {
    return UnavailableError("cudaMemGetInfo failed on GPU " + std::to_string(device));
  }
  return static_cast<uint64_t>(total_bytes - free_bytes);
}

}  // namespace zerodet
