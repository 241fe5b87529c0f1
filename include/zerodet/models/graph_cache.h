// The optimized-graph cache: ONNX Runtime's optimized graph of each model, saved once in a cache
// directory and loaded from there next time (several times faster than optimizing the .onnx
// again; see BackendOptions::optimized_graph_path for how a backend uses the file).
//
// A cache file's name is its key: SHA-256 of the model file, the ONNX Runtime version, the
// execution provider and device kind, the graph optimization level, and a hash of the CPU's
// feature flags (the CPU provider's optimized graph may hold layouts for this CPU's vector
// width). A changed model, another ONNX Runtime, provider, level or CPU model gets another file,
// so a stale graph is never loaded; old files are simply not used again (delete the directory to
// reclaim them). A damaged file is rebuilt.
//
// Thread-safety: safe from any thread (the hash memo is locked).
#pragma once

#include <filesystem>
#include <string>

#include "zerodet/core/status.h"
#include "zerodet/models/model_config.h"

namespace zerodet {

// Lowercase hex SHA-256 of a file's contents, memoized per (device, inode, size, mtime).
// Errors: as OpenRegularFile; kIoError for read errors.
Result<std::string> FileSha256(const std::filesystem::path& path);

// The cache file of `model_path` served with `config` (provider, level). Creates `cache_dir`
// when missing. Errors: as FileSha256; as PathError when the directory cannot be created.
Result<std::filesystem::path> OptimizedGraphPath(const std::filesystem::path& cache_dir,
                                                 const std::filesystem::path& model_path,
                                                 const ModelConfig& config);

}  // namespace zerodet
