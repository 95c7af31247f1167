// Forward throughput on llama-dense-26M (tokens/s) with the GEMM share of the time, against the machine's
// OpenBLAS sgemm rate measured in the same run at the same shapes.
//
// Usage: forward_bench [--model DIR] [--seq-len 512] [--batch 1] [--iters 3]
// Every op of the forward goes through a timing decorator of the Backend interface, so the split between
// the Linear GEMMs and everything else (attention, norms, RoPE, activations, head cross entropy) is measured,
// not estimated. The baseline calls OpenBLAS sgemm directly, with its own threading, at each GEMM shape of
// the forward (weighted by how often it occurs).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "qforge/base/blas_core.h"
#include "qforge/runtime/backend.h"
#include "qforge/base/progress.h"
#include "qforge/forward/forward_model.h"
#include "qforge/runtime/cpu/cpu_backend.h"

namespace qforge {
namespace {

// Forwards every op to the CPU backend and accumulates wall time per op (and GEMM shapes).
class TimingBackend final : public Backend {
 public:
  explicit TimingBackend(Backend& inner) : Backend(ComputeDType::kF32), inner_(inner) {}
  std::string_view name() const override { return "timing(cpu)"; }
  Device device() const override { return Device::kCpu; }
  void Copy(void* dst, const void* src, int64_t bytes) override { inner_.Copy(dst, src, bytes); }
  void Zero(void* dst, int64_t bytes) override { inner_.Zero(dst, bytes); }
  std::pair<int64_t, int64_t> MemoryInfo() const override { return inner_.MemoryInfo(); }

  void Gemm(const float* x, WeightRef w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
            bool accumulate, int64_t ldy) override {
    Timer t;
    inner_.Gemm(x, w, bias, y, m, n, k, accumulate, ldy);
    const double s = t.Seconds();
    seconds_["gemm"] += s;
    shapes_[{m, n, k}] += 1;
    gemm_flops_ += 2.0 * m * n * k;
  }
  void RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) override {
    Time("rmsnorm", [&] { inner_.RmsNorm(x, weight, y, rows, dim, eps); });
  }
  void Rope(float* x, int64_t b, int64_t h, int64_t s, int64_t d, const float* c, const float* sn) override {
    Time("rope", [&] { inner_.Rope(x, b, h, s, d, c, sn); });
  }
  void CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t b, int64_t h, int64_t g,
                       int64_t s, int64_t d, float scale) override {
    Time("attention", [&] { inner_.CausalAttention(q, k, v, out, b, h, g, s, d, scale); });
  }
  void CausalAttentionProbs(const float* q, const float* k, float* p, int64_t b, int64_t h, int64_t g, int64_t s,
                            int64_t d, float scale) override {
    Time("attention", [&] { inner_.CausalAttentionProbs(q, k, p, b, h, g, s, d, scale); });
  }
  void AttentionApply(const float* p, const float* v, float* o, int64_t b, int64_t h, int64_t g, int64_t s,
                      int64_t d) override {
    Time("attention", [&] { inner_.AttentionApply(p, v, o, b, h, g, s, d); });
  }
  void Softmax(float* x, int64_t r, int64_t c) override {
    Time("softmax", [&] { inner_.Softmax(x, r, c); });
  }
  void SiluMul(const float* g, const float* u, float* o, int64_t n) override {
    Time("silu_mul", [&] { inner_.SiluMul(g, u, o, n); });
  }
  void Add(float* y, const float* x, int64_t n) override {
    Time("add", [&] { inner_.Add(y, x, n); });
  }
  void BlockGram(const float* x, int64_t r, int64_t c, int64_t b, float* h) override {
    Time("block_gram", [&] { inner_.BlockGram(x, r, c, b, h); });
  }
  void ToBf16(const float* x, uint16_t* y, int64_t n) override {
    Time("convert", [&] { inner_.ToBf16(x, y, n); });
  }
  void FromBf16(const uint16_t* x, float* y, int64_t n) override {
    Time("convert", [&] { inner_.FromBf16(x, y, n); });
  }
  void SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) override {
    Time("transpose", [&] { inner_.SwapMiddleAxes(x, y, a, b, c, d); });
  }
  void TopKRouting(const float* l, int64_t t, int64_t e, int k, bool r, int32_t* ids, float* w) override {
    Time("routing", [&] { inner_.TopKRouting(l, t, e, k, r, ids, w); });
  }
  void ScaleColumns(float* x, const float* s, int64_t r, int64_t c) override {
    Time("scale_columns", [&] { inner_.ScaleColumns(x, s, r, c); });
  }
  void SigmoidScaleRows(float* x, const float* g, int64_t r, int64_t c) override {
    Time("sigmoid_scale", [&] { inner_.SigmoidScaleRows(x, g, r, c); });
  }
  void GatherRows(const float* x, const int32_t* i, float* o, int64_t r, int64_t d) override {
    Time("gather", [&] { inner_.GatherRows(x, i, o, r, d); });
  }
  void ScatterAddRows(const float* x, const int32_t* i, const float* w, float* y, int64_t r, int64_t d) override {
    Time("scatter_add", [&] { inner_.ScatterAddRows(x, i, w, y, r, d); });
  }
  float Amax(const float* x, int64_t n) override {
    float v = 0;
    Time("amax", [&] { v = inner_.Amax(x, n); });
    return v;
  }
  void CrossEntropy(const float* l, const int32_t* t, double* nll, int64_t r, int64_t v) override {
    Time("cross_entropy", [&] { inner_.CrossEntropy(l, t, nll, r, v); });
  }
  void EmbedRows(const void* table, DType dt, const int32_t* ids, float* out, int64_t rows, int64_t dim) override {
    Time("embed", [&] { inner_.EmbedRows(table, dt, ids, out, rows, dim); });
  }
  std::vector<int64_t> GroupRowsByExpert(const int32_t* ids, const float* w, int64_t t, int k, int64_t e,
                                         int32_t* rows, float* weights) override {
    std::vector<int64_t> r;
    Time("routing", [&] { r = inner_.GroupRowsByExpert(ids, w, t, k, e, rows, weights); });
    return r;
  }
  std::vector<float> QuantAmax(const QuantSpec& spec, const float* x, std::span<const int64_t> shape,
                               std::string_view what) override {
    std::vector<float> r;
    Time("quant_amax", [&] { r = inner_.QuantAmax(spec, x, shape, what); });
    return r;
  }
  void FakeQuant(const QuantSpec& spec, const float* x, std::span<const int64_t> shape, std::span<const float> amax,
                 float* out, std::optional<float> g, std::string_view what) override {
    Time("fake_quant", [&] { inner_.FakeQuant(spec, x, shape, amax, out, g, what); });
  }
  bool PackNvfp4(const float* w, int64_t r, int64_t c, float ws2, uint8_t* p, uint8_t* s) override {
    return inner_.PackNvfp4(w, r, c, ws2, p, s);
  }
  ErrorSums Nvfp4Error(const float* w, const uint8_t* p, const uint8_t* s, int64_t r, int64_t c, float ws2) override {
    return inner_.Nvfp4Error(w, p, s, r, c, ws2);
  }
  bool Nvfp4SweepBlocks(const float* w, int64_t r, int64_t c, std::span<const float> s, int32_t* i) override {
    return inner_.Nvfp4SweepBlocks(w, r, c, s, i);
  }
  ErrorSums Fp8Error(const float* w, const uint8_t* c, const float* s, int64_t n, int64_t g) override {
    return inner_.Fp8Error(w, c, s, n, g);
  }
  bool EncodeFp8(const float* w, const float* s, int64_t n, int64_t g, uint8_t* c) override {
    return inner_.EncodeFp8(w, s, n, g, c);
  }

  void Reset() {
    seconds_.clear();
    shapes_.clear();
    gemm_flops_ = 0;
  }
  const std::map<std::string, double>& seconds() const { return seconds_; }
  const std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t>& shapes() const { return shapes_; }
  double gemm_flops() const { return gemm_flops_; }

 private:
  // Host memory, like the CPU backend it wraps (the bench runs on the CPU only).
  void* AllocBytes(int64_t bytes) override { return std::aligned_alloc(64, (static_cast<size_t>(bytes) + 63) & ~size_t{63}); }
  void FreeBytes(void* p, int64_t) override { std::free(p); }
  void CopyToDevice(void* dst, const void* host, int64_t bytes) override { std::memcpy(dst, host, bytes); }
  void CopyToHost(void* host, const void* src, int64_t bytes) override { std::memcpy(host, src, bytes); }

  template <typename F>
  void Time(const char* op, F&& f) {
    Timer t;
    f();
    seconds_[op] += t.Seconds();
  }
  Backend& inner_;
  std::map<std::string, double> seconds_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> shapes_;
  double gemm_flops_ = 0;
};

// Seconds per call of OpenBLAS sgemm(x[m,k] · w[n,k]^T) with OpenBLAS's own threads (best of `reps`).
double SgemmSeconds(int64_t m, int64_t n, int64_t k, int threads, int reps) {
  std::vector<float> x(m * k, 0.01f), w(n * k, 0.02f), y(m * n);
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {
    Timer t;
    BlasSgemmOwnThreads(x.data(), w.data(), y.data(), m, n, k, threads);
    if (r > 0) best = std::min(best, t.Seconds());
  }
  return best;
}

int Main(int argc, char** argv) {
  std::string model_dir = std::string(QF_SHARED_DIR) + "/data/models/llama-dense-26M";
  int64_t seq = 512, batch = 1;
  int iters = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model")
      model_dir = argv[i + 1];
    else if (a == "--seq-len")
      seq = std::stoll(argv[i + 1]);
    else if (a == "--batch")
      batch = std::stoll(argv[i + 1]);
    else if (a == "--iters")
      iters = std::stoi(argv[i + 1]);
  }
  TimingBackend timing(DefaultCpuBackend());
  omp_set_dynamic(0);  // the forward and the sgemm baseline both use every thread
  auto model = ForwardModel::Load(model_dir, {}, &timing);
  const int64_t V = model->config().vocab_size;
  std::vector<int32_t> ids(batch * seq), targets(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i) {
    ids[i] = static_cast<int32_t>((i * 7919) % V);
    targets[i] = static_cast<int32_t>((i * 104729 + 1) % V);
  }
  std::vector<double> nll(batch * seq);
  auto forward = [&] {
    HiddenStates h = model->Embed(ids, batch, seq);
    for (int l = 0; l < model->num_layers(); ++l) model->RunLayer(l, h);
    model->TokenNll(h, targets, nll);
  };
  forward();  // warm-up: page in weights, size the workspace
  timing.Reset();
  Timer total;
  for (int it = 0; it < iters; ++it) forward();
  const double wall = total.Seconds() / iters;
  std::map<std::string, double> per_op;
  for (const auto& [op, s] : timing.seconds()) per_op[op] = s / iters;
  const double gemm_s = per_op["gemm"];
  const double gemm_flops = timing.gemm_flops() / iters;

  // Baseline: OpenBLAS sgemm with its own threading at the same shapes, weighted like the forward.
  const int threads = omp_get_max_threads();
  double base_s = 0;
  std::printf("%-22s %6s %12s %12s\n", "gemm shape (m,n,k)", "calls", "sgemm GF/s", "");
  for (const auto& [shape, calls] : timing.shapes()) {
    const auto [m, n, k] = shape;
    const double s = SgemmSeconds(m, n, k, threads, 5);
    base_s += s * static_cast<double>(calls) / iters;
    std::printf("(%5ld,%5ld,%5ld)  %6ld %12.1f\n", static_cast<long>(m), static_cast<long>(n), static_cast<long>(k),
                static_cast<long>(calls / iters), 2.0 * m * n * k / s * 1e-9);
  }

  std::printf("\nmodel %s, batch %ld x seq %ld, %d threads, %d iterations\n", model_dir.c_str(),
              static_cast<long>(batch), static_cast<long>(seq), threads, iters);
  std::printf("forward (embed + layers + head NLL): %.1f ms, %.0f tokens/s\n", wall * 1e3, batch * seq / wall);
  std::printf("GEMM in forward:   %.1f ms = %.1f%% of the forward, %.1f GFLOP/s\n", gemm_s * 1e3, 100 * gemm_s / wall,
              gemm_flops / gemm_s * 1e-9);
  std::printf("OpenBLAS sgemm:    %.1f ms at the same shapes, %.1f GFLOP/s\n", base_s * 1e3,
              gemm_flops / base_s * 1e-9);
  std::printf("GEMM efficiency:   %.2f (forward GEMM rate / sgemm rate; bar: >= 0.70)\n", base_s / gemm_s);
  std::printf("non-GEMM share:    %.1f%% of the forward (bar: < 25%%)\n", 100 * (wall - gemm_s) / wall);
  for (const auto& [op, s] : per_op) {
    if (op != "gemm") std::printf("  %-14s %8.2f ms  %5.1f%%\n", op.c_str(), s * 1e3, 100 * s / wall);
  }
  double ops = 0;
  for (const auto& [op, s] : per_op) ops += s;
  std::printf("  %-14s %8.2f ms  %5.1f%%\n", "(outside ops)", (wall - ops) * 1e3, 100 * (wall - ops) / wall);
  return 0;
}

}  // namespace
}  // namespace qforge

int main(int argc, char** argv) {
  qforge::ReexecForOpenBlasCore(argv, qforge::CpuBlasCoreName());  // the kernels users get (base/blas_core.h)
  return qforge::Main(argc, argv);
}
