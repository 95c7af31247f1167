// Quantization kernel throughput (runtime/cpu/quant_kernels) as a ratio to memcpy of the same bytes.
//
// Each op reads N float32 values (N * 4 bytes; 64 MiB by default, far beyond the caches) and the memcpy
// baseline copies the same N * 4 bytes, both measured in this run with 1 thread and with all threads
// (OpenMP). QDQ ops write N floats back (the same traffic as the memcpy); packing ops write 1/8 to 1/4 of
// that. The table printed at the end gives GB/s of input bytes (wall clock) and the ratio op / memcpy, and
// the same per CPU-second of all threads (process CPU time), which stays meaningful on a loaded machine.
// With --benchmark_repetitions=R the table uses the median of the R repetitions of each op (add
// --benchmark_enable_random_interleaving=true so that a burst of load elsewhere hits ops and the memcpy
// baseline alike).
// Usage: quant_kernels_bench [--benchmark_min_time=0.5] [--benchmark_repetitions=5
//        --benchmark_enable_random_interleaving=true] [--elements=N]
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qforge/base/blas_core.h"
#include "qforge/runtime/backend.h"
#include "qforge/numerics/encode.h"
#include "qforge/numerics/qdq.h"
#include "qforge/runtime/cpu/quant_kernels.h"

namespace {

int64_t g_elements = int64_t{16} << 20;  // 16 Mi floats = 64 MiB
constexpr int64_t kCols = 4096;

const std::vector<float>& Input() {
  static const std::vector<float> x = [] {
    std::vector<float> v(g_elements);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (float& f : v) f = nd(rng);
    return v;
  }();
  return x;
}

std::vector<int64_t> Shape() { return {g_elements / kCols, kCols}; }

qforge::QuantSpec Spec(qforge::PackFormat f) { return qforge::WeightSpecFor(f); }

void SetThreads(benchmark::State& state) {
  omp_set_num_threads(static_cast<int>(state.range(0)));
  state.counters["threads"] = static_cast<double>(state.range(0));
}

void BM_Memcpy(benchmark::State& state) {
  SetThreads(state);
  const auto& x = Input();
  std::vector<float> y(x.size());
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t chunk = 1 << 16;
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += chunk) std::memcpy(y.data() + c, x.data() + c, sizeof(float) * std::min(chunk, n - c));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 4);
}

void QdqBench(benchmark::State& state, qforge::PackFormat f) {
  SetThreads(state);
  const auto& x = Input();
  std::vector<float> y(x.size());
  const auto spec = Spec(f);
  const auto shape = Shape();
  const qforge::QdqPlan plan = qforge::MakeQdqPlan(spec, shape);
  std::vector<float> amax;
  if (plan.kind != qforge::QdqKind::kMx) amax = qforge::ComputeAmax(spec, x, shape, "x", &qforge::cpu::HostKernels());
  for (auto _ : state) {
    if (!qforge::cpu::FakeQuantFast(plan, x, amax, std::nullopt, y)) state.SkipWithError("fast path declined");
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.size()) * 4);
}

void PackBench(benchmark::State& state, qforge::PackFormat f) {
  SetThreads(state);
  const auto& x = Input();
  const auto shape = Shape();
  const qforge::HostQuantKernels* kernels = &qforge::cpu::HostKernels();
  qforge::PackInputs in;
  if (f == qforge::PackFormat::kNvfp4) {
    in.global_amax = qforge::ComputeAmax(Spec(f), x, shape, "weight", kernels)[0];
  } else {
    in.amax = qforge::ComputeAmax(Spec(f), x, shape, "weight", kernels);
  }
  // The whole export path of one weight (PackWeight: shape checks, output allocation, the kernel, which
  // checks finiteness in the same pass), with the CPU kernels passed as the CLI passes them.
  for (auto _ : state) {
    auto p = qforge::PackWeight(f, x, shape, in, "weight", kernels);
    benchmark::DoNotOptimize(p.weight.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.size()) * 4);
}

void BM_QdqFp8(benchmark::State& s) { QdqBench(s, qforge::PackFormat::kFp8); }
void BM_QdqNvfp4(benchmark::State& s) { QdqBench(s, qforge::PackFormat::kNvfp4); }
void BM_QdqMxfp4(benchmark::State& s) { QdqBench(s, qforge::PackFormat::kMxfp4); }
void BM_QdqMxfp8(benchmark::State& s) { QdqBench(s, qforge::PackFormat::kMxfp8); }
void BM_PackNvfp4(benchmark::State& s) { PackBench(s, qforge::PackFormat::kNvfp4); }
void BM_PackFp8(benchmark::State& s) { PackBench(s, qforge::PackFormat::kFp8); }

// Records bytes/s per (name, threads) and prints the ratio table after the normal console output.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      // Repeated runs: only their median enters the table.
      if (r.run_type == Run::RT_Aggregate ? r.aggregate_name != "median" : r.repetitions > 1) continue;
      auto it = r.counters.find("bytes_per_second");
      if (it == r.counters.end()) continue;
      const std::string full = r.benchmark_name();
      const std::string name = full.substr(0, full.find('/'));
      const int threads = static_cast<int>(r.counters.at("threads").value);
      gbps_[{name, threads}] = it->second.value / 1e9;
      const double bytes = it->second.value * r.GetAdjustedRealTime() / 1e3 * 1.0;  // per iteration (ms unit)
      const double cpu_s = r.GetAdjustedCPUTime() / 1e3;
      if (cpu_s > 0) cpu_gbps_[{name, threads}] = bytes / cpu_s / 1e9;
    }
  }
  void PrintRatios() const {
    std::printf("\n%-12s %7s %8s %12s %7s %12s %14s %7s\n", "op", "threads", "GB/s", "memcpy GB/s", "ratio",
                "GB/cpu-s", "memcpy GB/cpu-s", "ratio");
    for (const auto& [key, gbps] : gbps_) {
      if (key.first == "BM_Memcpy") continue;
      auto m = gbps_.find({"BM_Memcpy", key.second});
      if (m == gbps_.end()) continue;
      const double c = cpu_gbps_.count(key) ? cpu_gbps_.at(key) : 0.0;
      const auto mc = cpu_gbps_.find({"BM_Memcpy", key.second});
      const double cm = mc != cpu_gbps_.end() ? mc->second : 0.0;
      std::printf("%-12s %7d %8.2f %12.2f %7.2f %12.2f %14.2f %7.2f\n", key.first.c_str() + 3, key.second, gbps,
                  m->second, gbps / m->second, c, cm, cm > 0 ? c / cm : 0.0);
    }
  }

 private:
  std::map<std::pair<std::string, int>, double> gbps_;
  std::map<std::pair<std::string, int>, double> cpu_gbps_;
};

}  // namespace

int main(int argc, char** argv) {
  qforge::ReexecForOpenBlasCore(argv, qforge::CpuBlasCoreName());  // the kernels users get (base/blas_core.h)
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--elements=", 11) == 0) {
      g_elements = std::max<int64_t>(kCols, std::atoll(argv[i] + 11) / kCols * kCols);
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  const int all = omp_get_max_threads();
  struct Entry {
    const char* name;
    void (*fn)(benchmark::State&);
  } entries[] = {{"BM_Memcpy", BM_Memcpy},     {"BM_QdqFp8", BM_QdqFp8},     {"BM_QdqNvfp4", BM_QdqNvfp4},
                 {"BM_QdqMxfp4", BM_QdqMxfp4}, {"BM_QdqMxfp8", BM_QdqMxfp8}, {"BM_PackNvfp4", BM_PackNvfp4},
                 {"BM_PackFp8", BM_PackFp8}};
  for (const Entry& e : entries) {
    auto* b = benchmark::RegisterBenchmark(e.name, e.fn)->Arg(1)->UseRealTime()->MeasureProcessCPUTime()->Unit(
        benchmark::kMillisecond);
    if (all > 1) b->Arg(all);
  }
  Input();  // materialize once, outside the timings
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
