// What the model manager measures memory with: the process's resident set (CPU), the free
// memory of a GPU (cudaMemGetInfo, from the CUDA runtime loaded at run time, so zerodet builds
// and runs without CUDA), and returning freed heap memory to the system after an unload.
//
// Thread-safety: every function is safe to call from any thread.
#pragma once

#include <cstdint>

#include "zerodet/core/status.h"

namespace zerodet {

// The process's resident set size in bytes (/proc/self/statm). Errors: kIoError when it cannot
// be read.
Result<uint64_t> ProcessResidentBytes();

// The number of threads of this process (/proc/self/task).
Result<int> ProcessThreadCount();

// Returns the heap memory freed by released sessions to the system (glibc keeps freed chunks of
// its arenas, so without this the RSS of a process that unloaded models stays high).
void ReleaseFreedMemoryToSystem();

// Bytes of GPU `device` in use (total - free, cudaMemGetInfo). Errors: kUnavailable when the
// CUDA runtime library (libcudart) is not present or the device cannot be queried.
Result<uint64_t> GpuUsedBytes(int device);

}  // namespace zerodet
