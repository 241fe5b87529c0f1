#include "store_bench.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "latency_summary.h"
#include "store_lmdb.h"
#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/file.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/store/client.h"
#include "zerodet/store/server.h"

namespace zerodet::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

double NsSince(MonotonicClock::time_point start) {
  return std::chrono::duration<double, std::nano>(MonotonicClock::now() - start).count();
}

// A kernel setting or statistic, "" when unreadable (pseudo-files report no size: read to EOF).
std::string ReadSetting(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && value.back() == '\n') value.pop_back();
  return value;
}

uint64_t FreeHugePages() {
  std::istringstream meminfo(ReadSetting("/proc/meminfo"));
  for (std::string line; std::getline(meminfo, line);) {
    if (line.rfind("HugePages_Free:", 0) == 0) return std::stoull(line.substr(15));
  }
  return 0;
}

// A store in a child process, started before this process creates any thread (fork).
class StoreChild {
 public:
  ~StoreChild() { Stop(); }
  Status Start(const store::StoreOptions& options) {
    int ready[2];
    if (::pipe(ready) != 0) return ErrnoError("pipe", errno);
    pid_ = ::fork();
    if (pid_ < 0) return ErrnoError("fork", errno);
    if (pid_ == 0) {
      ::close(ready[0]);
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGTERM);
      ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
      auto server = store::StoreServer::Create(options);
      char message[512] = {};
      if (!server.ok())
        std::snprintf(message, sizeof(message), "%s", server.status().message().c_str());
      [[maybe_unused]] ssize_t n = ::write(ready[1], message, sizeof(message));
      if (!server.ok()) ::_exit(1);
      (*server)->Start();
      int sig = 0;
      ::sigwait(&set, &sig);
      (*server)->Stop();
      ::_exit(0);
    }
    ::close(ready[1]);
    char message[512] = {};
    const ssize_t n = ::read(ready[0], message, sizeof(message));
    ::close(ready[0]);
    if (n != static_cast<ssize_t>(sizeof(message))) {
      return UnavailableError("the benchmark's store did not start");
    }
    if (message[0] != '\0') {
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return UnavailableError(message);
    }
    return Status::Ok();
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// A temporary directory, removed with its contents.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& parent) {
    std::string pattern = parent + "/zerodet-bench-store-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  bool ok() const { return !path_.empty(); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `readers` processes that get samples round-robin for `seconds`; returns samples/s in all.
Result<double> ReaderThroughput(const std::string& socket, const std::string& name, int readers,
                                double seconds) {
  std::vector<pid_t> pids;
  std::vector<int> result_fds;
  int go[2];
  if (::pipe(go) != 0) return ErrnoError("pipe", errno);
  int ready[2];
  if (::pipe(ready) != 0) return ErrnoError("pipe", errno);
  for (int r = 0; r < readers; ++r) {
    int result[2];
    if (::pipe(result) != 0) return ErrnoError("pipe", errno);
    const pid_t pid = ::fork();
    if (pid < 0) return ErrnoError("fork", errno);
    if (pid == 0) {
      ::close(go[1]);
      ::close(ready[0]);
      ::close(result[0]);
      uint64_t count = 0;
      auto client = store::StoreClient::Connect(socket, {.access = store::StoreAccess::kReadOnly});
      std::unique_ptr<dataset::DatasetReader> reader;
      if (client.ok()) {
        auto opened = dataset::DatasetReader::Open(std::move(*client), name);
        if (opened.ok()) reader = std::move(*opened);
      }
      const char byte = 1;
      [[maybe_unused]] ssize_t n = ::write(ready[1], &byte, 1);
      char start;
      n = ::read(go[0], &start, 1);  // EOF: start
      if (reader != nullptr) {
        const auto end = MonotonicClock::now() + std::chrono::duration<double>(seconds);
        volatile uint8_t sink = 0;  // one read of each sample, so it is really fetched
        size_t i = 0;
        while (MonotonicClock::now() < end) {
          for (int k = 0; k < 64; ++k) {
            auto sample = reader->Get(i++ % reader->size());
            if (!sample.ok()) ::_exit(1);
            sink = sample->bytes()[0];
            ++count;
          }
        }
        (void)sink;
      }
      n = ::write(result[1], &count, sizeof(count));
      ::_exit(reader != nullptr ? 0 : 1);
    }
    ::close(result[1]);
    pids.push_back(pid);
    result_fds.push_back(result[0]);
  }
  ::close(go[0]);
  ::close(ready[1]);
  // Every reader has connected and opened the dataset (or failed) before the clock starts.
  for (int r = 0; r < readers; ++r) {
    char byte;
    if (::read(ready[0], &byte, 1) != 1) break;
  }
  ::close(ready[0]);
  const auto start = MonotonicClock::now();
  ::close(go[1]);
  uint64_t total = 0;
  bool failed = false;
  for (size_t r = 0; r < pids.size(); ++r) {
    uint64_t count = 0;
    if (::read(result_fds[r], &count, sizeof(count)) != sizeof(count)) failed = true;
    ::close(result_fds[r]);
    int status = 0;
    ::waitpid(pids[r], &status, 0);
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    total += count;
  }
  const double elapsed = NsSince(start) / 1e9;
  if (failed) return InternalError("a benchmark reader process failed");
  return static_cast<double>(total) / elapsed;
}

// One byte of every 4 KiB page; returns their sum so the reads cannot be optimized away.
uint64_t TouchPages(std::span<const uint8_t> bytes) {
  uint64_t sum = 0;
  for (size_t i = 0; i < bytes.size(); i += 4096) {
    sum += *static_cast<const volatile uint8_t*>(bytes.data() + i);
  }
  return sum;
}

// Get and page-touch timings of one source, kept apart.
struct TouchTimings {
  std::vector<double> get_ns, touch_ns;
  nlohmann::json ToJsonObject() const {
    return {{"get", ToJson(SummarizeNs(get_ns))}, {"touch", ToJson(SummarizeNs(touch_ns))}};
  }
};

// One pass over the dataset in `reader`'s store: get, touch, release.
Status TouchStorePass(store::StoreClient& client, const dataset::DatasetReader& reader,
                      TouchTimings* timings, uint64_t* sink) {
  for (size_t i = 0; i < reader.size(); ++i) {
    auto start = MonotonicClock::now();
    auto view = client.Get(reader.info(i).id);
    if (!view.ok()) return view.status();
    timings->get_ns.push_back(NsSince(start));
    start = MonotonicClock::now();
    *sink += TouchPages(view->data());
    timings->touch_ns.push_back(NsSince(start));
  }
  return Status::Ok();
}

Status TouchLmdbPass(LmdbCopy& lmdb, size_t samples, TouchTimings* timings, uint64_t* sink) {
  for (uint32_t key = 0; key < samples; ++key) {
    auto start = MonotonicClock::now();
    auto value = lmdb.Get(key);
    if (!value.ok()) return value.status();
    timings->get_ns.push_back(NsSince(start));
    start = MonotonicClock::now();
    *sink += TouchPages(*value);
    timings->touch_ns.push_back(NsSince(start));
  }
  return Status::Ok();
}

double P50(const std::vector<double>& ns) {
  return SummarizeNs(ns).p50_us;
}

struct PreloadedStore {
  StoreChild process;
  std::shared_ptr<store::StoreClient> client;
  std::unique_ptr<dataset::DatasetReader> reader;
  double preload_s = 0;
};

// Starts a store with `options`, preloads the benchmark's dataset and opens it read-only.
Status StartPreloaded(const StoreBenchOptions& bench, store::StoreOptions options,
                      PreloadedStore* out) {
  ZD_RETURN_IF_ERROR(out->process.Start(options));
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<store::StoreClient> writer,
                      store::StoreClient::Connect(options.socket_path));
  dataset::PreloadOptions preload;
  preload.dataset = "bench";
  preload.layout = dataset::SampleLayout::kLetterbox;
  preload.letterbox_size = bench.size;
  const auto start = MonotonicClock::now();
  ZD_RETURN_IF_ERROR(dataset::PreloadDataset(*writer, bench.source, preload).status());
  out->preload_s = NsSince(start) / 1e9;
  ZD_ASSIGN_OR_RETURN(
      std::unique_ptr<store::StoreClient> reader_client,
      store::StoreClient::Connect(options.socket_path, {.access = store::StoreAccess::kReadOnly}));
  out->client = std::move(reader_client);
  ZD_ASSIGN_OR_RETURN(out->reader, dataset::DatasetReader::Open(out->client, "bench"));
  return Status::Ok();
}

}  // namespace

Result<nlohmann::json> RunStoreBenchmark(const StoreBenchOptions& options) {
  ZD_ASSIGN_OR_RETURN(std::vector<dataset::DatasetImage> images,
                      dataset::ListDatasetImages(options.source));
  const uint64_t sample_bytes = uint64_t{3} * static_cast<uint64_t>(options.size) *
                                static_cast<uint64_t>(options.size) * sizeof(float);
  ScratchDir dir("/tmp");
  if (!dir.ok()) return ErrnoError("mkdtemp", errno);
  store::StoreOptions store_options;
  store_options.socket_path = dir.File("store.sock");
  store_options.capacity = (sample_bytes + 4096) * images.size() + (64 << 20);

  // (a) file -> decode -> letterbox, before any store exists.
  std::vector<double> file_ns;
  {
    Letterboxer letterboxer;
    std::vector<float> input(sample_bytes / sizeof(float));
    for (int pass = 0; pass < options.file_passes; ++pass) {
      for (const dataset::DatasetImage& image : images) {
        const auto start = MonotonicClock::now();
        ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(image.path));
        ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, image.path.string()));
        ZD_RETURN_IF_ERROR(letterboxer
                               .Run(decoded.image.view(), LetterboxStyle::kUltralytics,
                                    options.size, options.size, input.data(), input.size())
                               .status());
        file_ns.push_back(NsSince(start));
      }
    }
  }

  auto main_store = std::make_unique<PreloadedStore>();
  ZD_RETURN_IF_ERROR(StartPreloaded(options, store_options, main_store.get()));
  store::StoreClient& client = *main_store->client;
  const dataset::DatasetReader& reader = *main_store->reader;

  // (b) get through the socket protocol.
  std::vector<double> socket_ns;
  for (int pass = 0; pass < options.socket_passes; ++pass) {
    for (size_t i = 0; i < reader.size(); ++i) {
      const auto start = MonotonicClock::now();
      auto view = client.Get(reader.info(i).id, {.timeout = 0ms, .fast_path = false});
      if (!view.ok()) return view.status();
      view->Release();
      socket_ns.push_back(NsSince(start));
    }
  }
  // (c) fast-path get through the dataset reader.
  std::vector<double> fast_ns;
  for (int pass = 0; pass < options.fast_passes; ++pass) {
    for (size_t i = 0; i < reader.size(); ++i) {
      const auto start = MonotonicClock::now();
      auto sample = reader.Get(i);
      if (!sample.ok()) return sample.status();
      if (!sample->from_store()) return InternalError("sample not in the store");
      sample = dataset::Sample();
      fast_ns.push_back(NsSince(start));
    }
  }

  nlohmann::json throughput = nlohmann::json::array();
  for (int readers : {1, 2, 4, 8}) {
    ZD_ASSIGN_OR_RETURN(double rate, ReaderThroughput(store_options.socket_path, "bench", readers,
                                                      options.reader_seconds));
    throughput.push_back({{"readers", readers}, {"samples_per_s", rate}});
  }

  nlohmann::json a = ToJson(SummarizeNs(file_ns)), b = ToJson(SummarizeNs(socket_ns)),
                 c = ToJson(SummarizeNs(fast_ns));
  nlohmann::json out = {
      {"benchmark", "store"},
      {"source", options.source},
      {"images", images.size()},
      {"sample", "letterbox 3x" + std::to_string(options.size) + "x" +
                     std::to_string(options.size) + " float32"},
      {"sample_bytes", sample_bytes},
      {"cpus", std::thread::hardware_concurrency()},
      {"preload_s", main_store->preload_s},
      {"a_file_decode_letterbox", a},
      {"b_socket_get", b},
      {"c_fast_get", c},
      {"ratio_a_over_c_p50", a["p50_us"].get<double>() / c["p50_us"].get<double>()},
      {"ratio_b_over_c_p50", b["p50_us"].get<double>() / c["p50_us"].get<double>()},
      {"ratio_a_over_c_p99", a["p99_us"].get<double>() / c["p99_us"].get<double>()},
      {"reader_processes", throughput}};
  if (!options.compare_backings) return out;

  // Reading the bytes, side by side: every backing against the same LMDB copy, passes
  // interleaved so that drift affects both alike.
  std::vector<std::span<const uint8_t>> values;
  std::vector<store::ObjectView> views;
  for (size_t i = 0; i < reader.size(); ++i) {
    ZD_ASSIGN_OR_RETURN(store::ObjectView view, client.Get(reader.info(i).id));
    values.push_back(view.data());
    views.push_back(std::move(view));
  }
  ScratchDir shm("/dev/shm");
  Result<std::unique_ptr<LmdbCopy>> lmdb =
      shm.ok()
          ? LmdbCopy::Create(shm.File("lmdb"), values)
          : Result<std::unique_ptr<LmdbCopy>>(IoError("cannot create a directory in /dev/shm"));
  views.clear();
  nlohmann::json touch = {
      {"what",
       "one byte of every 4 KiB page of each sample, after a get; passes alternate "
       "between the store and LMDB"},
      {"passes", options.touch_passes},
      {"shmem_transparent_hugepages",
       ReadSetting("/sys/kernel/mm/transparent_hugepage/shmem_enabled")},
      {"hugetlb_pages_free", FreeHugePages()}};
  if (!lmdb.ok()) {
    touch["lmdb"] = {{"skipped", lmdb.status().message()}};
  } else {
    touch["lmdb"] = {{"where",
                      "/dev/shm, written with mdb_put, read through a read-only "
                      "environment (MDB_RDONLY), a read transaction renewed per get"}};
  }
  uint64_t sink = 0;
  auto compare = [&](const char* name, PreloadedStore& backing) -> Status {
    TouchTimings store_timings, lmdb_timings;
    for (int pass = 0; pass < options.touch_passes; ++pass) {
      ZD_RETURN_IF_ERROR(TouchStorePass(*backing.client, *backing.reader, &store_timings, &sink));
      if (lmdb.ok()) {
        ZD_RETURN_IF_ERROR(TouchLmdbPass(**lmdb, backing.reader->size(), &lmdb_timings, &sink));
      }
    }
    nlohmann::json result = {{"store", store_timings.ToJsonObject()}};
    if (lmdb.ok()) {
      result["lmdb"] = lmdb_timings.ToJsonObject();
      result["ratio_touch_store_over_lmdb_p50"] =
          P50(store_timings.touch_ns) / P50(lmdb_timings.touch_ns);
      result["ratio_get_store_over_lmdb_p50"] =
          P50(store_timings.get_ns) / P50(lmdb_timings.get_ns);
    }
    touch[name] = result;
    return Status::Ok();
  };
  ZD_RETURN_IF_ERROR(compare("arena_default", *main_store));
  main_store.reset();  // one arena at a time

  auto variant = [&](const char* name, store::StoreOptions variant_options) -> Status {
    PreloadedStore backing;
    Status started = StartPreloaded(options, variant_options, &backing);
    if (!started.ok()) {
      touch[name] = {{"skipped", started.message()}};
      return Status::Ok();
    }
    return compare(name, backing);
  };
  store::StoreOptions populated = store_options;
  populated.populate = true;
  ZD_RETURN_IF_ERROR(variant("arena_populated", populated));
  store::StoreOptions hugetlb = store_options;
  hugetlb.hugepages = true;
  ZD_RETURN_IF_ERROR(variant("arena_hugetlbfs", hugetlb));
  touch["checksum"] = sink;
  out["page_touch"] = touch;
  return out;
}

}  // namespace zerodet::bench
