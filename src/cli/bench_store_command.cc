// `zerodet bench store`: per-sample load time of a dataset's images as model inputs, three ways,
// side by side in one run, plus aggregate read throughput with 1, 2, 4 and 8 reader processes.
// Prints one JSON object.
//
//   (a) file:        read the file + decode + letterbox into a buffer (what a worker does
//                    without a store)
//   (b) socket_get:  StoreClient::Get through the socket protocol (fast path off): one request
//                    and reply per sample
//   (c) fast_get:    DatasetReader::Get: the shared index and this process's reference slots,
//                    no system call
// Every get returns a view of the same letterboxed 3xSxS float32 tensor that (a) computes; its
// reference is released before the next get. The store runs in its own process, as in use.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "command_registry.h"
#include "latency_summary.h"
#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/core/file.h"
#include "zerodet/store/client.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/store/server.h"

namespace zerodet::cli {
namespace {

using bench::LatencySummary;
using bench::SummarizeNs;
using bench::ToJson;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct BenchStoreArgs {
  std::string source = "../shared/coco-val-tiny";
  int size = 640;
  int file_passes = 2;
  int socket_passes = 20;
  int fast_passes = 500;
  double reader_seconds = 1.0;
};

double NsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// The store in a child process, started before this process creates any thread.
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
      const char status = server.ok() ? 1 : 0;
      if (!server.ok()) std::fprintf(stderr, "error: %s\n", server.status().ToString().c_str());
      [[maybe_unused]] ssize_t n = ::write(ready[1], &status, 1);
      if (!server.ok()) ::_exit(1);
      (*server)->Start();
      int sig = 0;
      ::sigwait(&set, &sig);
      (*server)->Stop();
      ::_exit(0);
    }
    ::close(ready[1]);
    char status = 0;
    const ssize_t n = ::read(ready[0], &status, 1);
    ::close(ready[0]);
    if (n != 1 || status != 1) return UnavailableError("the benchmark's store did not start");
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

// Runs `readers` processes that get samples round-robin for `seconds`; returns samples/s in all.
Result<double> ReaderThroughput(const std::string& socket, const std::string& dataset, int readers,
                                double seconds) {
  std::vector<pid_t> pids;
  std::vector<int> result_fds;
  int go[2];
  if (::pipe(go) != 0) return ErrnoError("pipe", errno);
  for (int r = 0; r < readers; ++r) {
    int result[2];
    if (::pipe(result) != 0) return ErrnoError("pipe", errno);
    const pid_t pid = ::fork();
    if (pid < 0) return ErrnoError("fork", errno);
    if (pid == 0) {
      ::close(go[1]);
      ::close(result[0]);
      uint64_t count = 0;
      auto client = store::StoreClient::Connect(socket);
      std::unique_ptr<dataset::DatasetReader> reader;
      if (client.ok()) {
        auto opened = dataset::DatasetReader::Open(std::move(*client), dataset);
        if (opened.ok()) reader = std::move(*opened);
      }
      char byte;
      [[maybe_unused]] ssize_t n = ::read(go[0], &byte, 1);  // EOF: start
      if (reader != nullptr) {
        const auto end = Clock::now() + std::chrono::duration<double>(seconds);
        volatile uint8_t sink = 0;  // one read of each sample, so it is really fetched
        size_t i = 0;
        while (Clock::now() < end) {
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
  std::this_thread::sleep_for(200ms);  // let every reader connect and open the dataset
  const auto start = Clock::now();
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
  return total / elapsed;
}

int RunBenchStore(const BenchStoreArgs& args) {
  auto fail = [](const Status& status) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  };
  auto images = dataset::ListDatasetImages(args.source);
  if (!images.ok()) return fail(images.status());
  const uint64_t sample_bytes = uint64_t{3} * args.size * args.size * sizeof(float);

  char dir_template[] = "/tmp/zerodet-bench-store-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return fail(ErrnoError("mkdtemp", errno));
  const std::string socket = std::string(dir_template) + "/store.sock";
  store::StoreOptions options;
  options.socket_path = socket;
  options.capacity = sample_bytes * images->size() + (64 << 20);
  StoreChild store_process;
  if (Status s = store_process.Start(options); !s.ok()) return fail(s);
  auto cleanup = [&] {
    store_process.Stop();
    std::error_code ec;
    fs::remove_all(dir_template, ec);
  };

  // (a) file -> decode -> letterbox.
  std::vector<double> file_ns;
  {
    Letterboxer letterboxer;
    std::vector<float> input(sample_bytes / sizeof(float));
    for (int pass = 0; pass < args.file_passes; ++pass) {
      for (const dataset::DatasetImage& image : *images) {
        const fs::path& path = image.path;
        const auto start = Clock::now();
        auto bytes = ReadFileBytes(path);
        if (!bytes.ok()) return cleanup(), fail(bytes.status());
        auto decoded = DecodeImage(*bytes, path.string());
        if (!decoded.ok()) return cleanup(), fail(decoded.status());
        auto geometry = letterboxer.Run(decoded->image.view(), LetterboxStyle::kUltralytics,
                                        args.size, args.size, input.data(), input.size());
        if (!geometry.ok()) return cleanup(), fail(geometry.status());
        file_ns.push_back(NsSince(start));
      }
    }
  }

  auto connected = store::StoreClient::Connect(socket);
  if (!connected.ok()) return cleanup(), fail(connected.status());
  std::shared_ptr<store::StoreClient> client = std::move(*connected);
  dataset::PreloadOptions preload;
  preload.dataset = "bench";
  preload.layout = dataset::SampleLayout::kLetterbox;
  preload.letterbox_size = args.size;
  const auto preload_start = Clock::now();
  auto report = dataset::PreloadDataset(*client, args.source, preload);
  if (!report.ok()) return cleanup(), fail(report.status());
  const double preload_s = NsSince(preload_start) / 1e9;
  auto opened = dataset::DatasetReader::Open(client, "bench");
  if (!opened.ok()) return cleanup(), fail(opened.status());
  const dataset::DatasetReader& reader = **opened;

  // (b) get through the socket protocol.
  std::vector<double> socket_ns;
  for (int pass = 0; pass < args.socket_passes; ++pass) {
    for (size_t i = 0; i < reader.size(); ++i) {
      const auto start = Clock::now();
      auto view = client->Get(reader.info(i).id, {.timeout = 0ms, .fast_path = false});
      if (!view.ok()) return cleanup(), fail(view.status());
      view->Release();
      socket_ns.push_back(NsSince(start));
    }
  }
  // (c) fast-path get through the dataset reader.
  std::vector<double> fast_ns;
  for (int pass = 0; pass < args.fast_passes; ++pass) {
    for (size_t i = 0; i < reader.size(); ++i) {
      const auto start = Clock::now();
      auto sample = reader.Get(i);
      if (!sample.ok()) return cleanup(), fail(sample.status());
      if (!sample->from_store()) return cleanup(), fail(InternalError("sample not in the store"));
      sample = dataset::Sample();
      fast_ns.push_back(NsSince(start));
    }
  }

  nlohmann::json throughput = nlohmann::json::array();
  for (int readers : {1, 2, 4, 8}) {
    auto rate = ReaderThroughput(socket, "bench", readers, args.reader_seconds);
    if (!rate.ok()) return cleanup(), fail(rate.status());
    throughput.push_back({{"readers", readers}, {"samples_per_s", *rate}});
  }
  cleanup();

  nlohmann::json a = ToJson(SummarizeNs(file_ns)), b = ToJson(SummarizeNs(socket_ns)),
                 c = ToJson(SummarizeNs(fast_ns));
  nlohmann::json out = {
      {"benchmark", "store"},
      {"source", args.source},
      {"images", images->size()},
      {"sample",
       "letterbox 3x" + std::to_string(args.size) + "x" + std::to_string(args.size) + " float32"},
      {"sample_bytes", sample_bytes},
      {"cpus", std::thread::hardware_concurrency()},
      {"preload_s", preload_s},
      {"a_file_decode_letterbox", a},
      {"b_socket_get", b},
      {"c_fast_get", c},
      {"ratio_a_over_c_p50", a["p50_us"].get<double>() / c["p50_us"].get<double>()},
      {"ratio_b_over_c_p50", b["p50_us"].get<double>() / c["p50_us"].get<double>()},
      {"ratio_a_over_c_p99", a["p99_us"].get<double>() / c["p99_us"].get<double>()},
      {"reader_processes", throughput}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

const CommandRegistrar kRegistrar("bench-store", [](CLI::App& app) {
  auto args = std::make_shared<BenchStoreArgs>();
  auto* cmd = BenchGroup(app)->add_subcommand(
      "store", "Per-sample load time: file+decode+letterbox vs store socket get vs fast get");
  cmd->add_option("--source", args->source, "Image directory or COCO annotation .json");
  cmd->add_option("--size", args->size, "Letterbox size")->check(CLI::Range(32, 4096));
  cmd->add_option("--file-passes", args->file_passes, "Passes over the images for (a)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--socket-passes", args->socket_passes, "Passes for (b)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--fast-passes", args->fast_passes, "Passes for (c)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--reader-seconds", args->reader_seconds,
                  "Duration of each reader-process throughput run")
      ->check(CLI::Range(0.05, 60.0));
  SetRun(cmd, [args] { return ExitCodeStatus(RunBenchStore(*args)); });
});

}  // namespace
}  // namespace zerodet::cli
