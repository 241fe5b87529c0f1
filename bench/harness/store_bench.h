// The measuring code of `zerodet bench store` (the command is flag wiring around it).
//
// Per-sample load time of a dataset's images as letterboxed 3xSxS float32 model inputs, three
// ways, side by side in one run: (a) read the file + decode + letterbox, (b) a store get
// through the socket protocol, (c) a fast-path get (DatasetReader::Get); then aggregate
// read throughput with 1, 2, 4 and 8 reader processes. Every store runs in its own process,
// as in use.
//
// Reading the bytes: one byte of every 4 KiB page of each sample is read ("page touch", what a
// model's first pass over its input costs at least), from the store's arena as it comes, from
// arenas with the other backings the machine allows (populated at start, so transparent huge
// pages apply when shmem_enabled permits; hugetlbfs pages when reserved), and from an LMDB
// environment on /dev/shm holding the same bytes (the comparable memory-mapped store), plus
// the get alone in both. Backings the machine does not allow are reported with the reason.
//
// Thread safety: one benchmark at a time per process (it forks and sets up children).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "zerodet/core/status.h"

namespace zerodet::bench {

struct StoreBenchOptions {
  std::string source;  // image directory or COCO annotation file
  int size = 640;      // letterbox size
  int file_passes = 2;
  int socket_passes = 20;
  int fast_passes = 500;
  int touch_passes = 20;  // page-touch passes over all samples, per backing
  double reader_seconds = 1.0;
  bool compare_backings = true;  // page touch with other arena backings and LMDB
};

// Runs everything above; returns one JSON object (latency summaries in microseconds, rates,
// ratios, and the settings that explain them). Errors: the dataset, the store or a reader
// process that failed.
Result<nlohmann::json> RunStoreBenchmark(const StoreBenchOptions& options);

}  // namespace zerodet::bench
