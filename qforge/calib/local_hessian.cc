// Local-Hessian capture and loss (spec §6.4).
#include "qforge/calib/local_hessian.h"

#include <algorithm>
#include <map>
#include <memory>

#include "qforge/base/error.h"
#include "qforge/base/progress.h"
#include "qforge/calib/max_calib.h"

namespace qforge {

HessianCaptureHooks::HessianCaptureHooks(ForwardModel& fm, const QuantState& state, const std::vector<int>& modules,
                                         int64_t block, FakeQuantHooks activations, bool after_quant)
    : be_(fm.backend()), after_quant_(after_quant), inner_(std::move(activations)) {
  QF_CHECK(block >= 0, "local_hessian: block_size must be > 0, got {}", block);
  for (int m : modules) {
    const ModuleInfo& info = fm.modules()[static_cast<size_t>(m)];
    const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
    const int64_t b = block == 0 ? info.in_features : block;
    if (w == nullptr || !w->enabled() || b == 0 || info.in_features % b != 0) continue;
    Acc a;
    a.cols = info.in_features;
    a.block = b;
    const int64_t bytes = info.in_features * b * static_cast<int64_t>(sizeof(float));
    a.h = be_.Alloc(bytes);
    be_.Zero(a.h.data(), bytes);
    acc_.emplace(m, std::move(a));
  }
}

void HessianCaptureHooks::OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) {
  if (after_quant_) inner_.OnLinearInput(be, module, x, rows, cols);  // the fake quantization, in place
  auto it = acc_.find(module);
  if (it != acc_.end()) {
    QF_ASSERT(cols == it->second.cols, "Hessian capture: module {} input has {} columns, expected {}", module, cols,
              it->second.cols);
    be.BlockGram(x, rows, cols, it->second.block, it->second.h.as<float>());
    it->second.tokens += rows;
  }
  if (!after_quant_) inner_.OnLinearInput(be, module, x, rows, cols);  // then the fake quantization, in place
}

std::vector<float> HessianCaptureHooks::NormalizedHessian(int module, float scale) const {
  auto it = acc_.find(module);
  if (it == acc_.end() || it->second.tokens == 0) return {};
  std::vector<float> h(static_cast<size_t>(it->second.cols * it->second.block));
  be_.Download(h.data(), it->second.h.data(), static_cast<int64_t>(h.size() * sizeof(float)));
  const float n = static_cast<float>(it->second.tokens);
  if (scale == 1.0f) {
    for (float& v : h) v /= n;  // fp32, as ModelOpt's hessian_per_block / num_samples
  } else {
    const float f = scale / n;  // GPTQ: (2 / n) Σ x xᵀ
    for (float& v : h) v *= f;
  }
  return h;
}

int64_t HessianCaptureHooks::tokens(int module) const {
  auto it = acc_.find(module);
  return it == acc_.end() ? 0 : it->second.tokens;
}

void CaptureForward(ForwardModel& fm, const CalibData& calib, int64_t batch_size, ForwardHooks& hooks,
                    bool through_head, bool show_progress, std::string_view name) {
  const int64_t bs = std::max<int64_t>(1, batch_size);
  const int64_t n = static_cast<int64_t>(calib.samples.size());
  Progress progress(std::string(name), (n + bs - 1) / bs, "batches");
  for (int64_t b0 = 0; b0 < n; b0 += bs) {
    const int64_t b = std::min(bs, n - b0);
    HiddenStates h = fm.Embed(BatchIds(calib, b0, b), b, calib.seq_len);
    for (int l = 0; l < fm.num_layers(); ++l) fm.RunLayer(l, h, &hooks);
    if (through_head) (void)fm.Logits(h, &hooks);
    if (show_progress) progress.Add(1, "capture");
  }
  if (show_progress) progress.Finish();
}

void CaptureLayer(ForwardModel& fm, int layer, const ActivationStore& inputs, ForwardHooks& hooks) {
  for (int64_t b = 0; b < inputs.size(); ++b) {
    HiddenStates h = inputs.Get(b);
    if (layer >= 0) {
      fm.RunLayer(layer, h, &hooks);
    } else {
      (void)fm.Logits(h, &hooks);
    }
  }
}

LocalHessianMetric::LocalHessianMetric(QuantSpec spec, std::vector<int64_t> shape, int64_t block,
                                       std::vector<float> hessian)
    : spec_(std::move(spec)), shape_(std::move(shape)), block_(block), h_(std::move(hessian)) {
  QF_ASSERT(shape_.size() == 2 && shape_[1] % block_ == 0 &&
                static_cast<int64_t>(h_.size()) == shape_[1] * block_,
            "LocalHessianMetric: weight [{} dims], Hessian of {} values for block {}", shape_.size(), h_.size(), block_);
}

void LocalHessianMetric::GroupLosses(std::span<const float> x, std::span<const float> xq,
                                     std::span<double> losses) const {
  const int64_t rows = shape_[0], cols = shape_[1], b = block_, nb = cols / b;
  std::vector<double> per_element(x.size());
  std::vector<double> dw(static_cast<size_t>(b));
#pragma omp parallel for schedule(static) firstprivate(dw) if (rows * cols > (int64_t{1} << 16))
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t o = r * cols + j * b;
      for (int64_t a = 0; a < b; ++a) dw[a] = static_cast<double>(x[o + a]) - static_cast<double>(xq[o + a]);
      const float* h = h_.data() + j * b * b;
      double loss = 0;
      for (int64_t a = 0; a < b; ++a) {
        double row = 0;
        for (int64_t c = 0; c < b; ++c) row += static_cast<double>(h[a * b + c]) * dw[c];
        loss += dw[a] * row;
      }
      for (int64_t a = 0; a < b; ++a) per_element[o + a] = loss;
    }
  }
  GroupSum(spec_, shape_, per_element, losses);
}

namespace {

// The search of `layer`'s weights, with the Hessian metric where `hooks` hold one.
WeightSearchStats SearchWithHessians(const Model& model, QuantState& state, int layer, const HessianCaptureHooks& hooks,
                                     int64_t block, const WeightSearchOptions& search, const HostQuantKernels* kernels,
                                     int* with_hessian) {
  std::map<int, std::unique_ptr<LocalHessianMetric>> metrics;
  auto metric_for = [&](int m) -> const AmaxSearchMetric* {
    std::vector<float> h = hooks.NormalizedHessian(m);
    if (h.empty()) return nullptr;
    const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
    const Quantizer* q = state.Get(m, QuantizerRole::kWeight);
    auto& slot = metrics[m];
    slot = std::make_unique<LocalHessianMetric>(q->spec(), std::vector<int64_t>{info.out_features, info.in_features},
                                                block, std::move(h));
    ++*with_hessian;
    return slot.get();
  };
  return SearchLayerWeightAmax(model, state, layer, search, kernels, metric_for);
}

bool HeadSearched(const Model& model, const QuantState& state, const WeightSearchOptions& search) {
  const Quantizer* q = state.Get(model.lm_head_module(), QuantizerRole::kWeight);
  return q != nullptr && q->enabled() && WeightSearchEligible(*q, search);
}

}  // namespace

WeightSearchStats LocalHessianRefineLayer(ForwardModel& fm, QuantState& state, int layer,
                                          const ActivationStore& inputs, int64_t block,
                                          const WeightSearchOptions& search, int* with_hessian) {
  const Model& model = fm.model();
  HessianCaptureHooks hooks(fm, state, model.linear_modules(layer), block, FakeQuantHooks::FromState(model, state));
  if (layer >= 0 || HeadSearched(model, state, search)) CaptureLayer(fm, layer, inputs, hooks);
  return SearchWithHessians(model, state, layer, hooks, block, search, fm.backend().host_kernels(), with_hessian);
}

WeightSearchStats LocalHessianRefineWhole(ForwardModel& fm, QuantState& state, const CalibData& calib,
                                          int64_t batch_size, int64_t block, const WeightSearchOptions& search,
                                          bool show_progress, std::string_view name, int* with_hessian) {
  const Model& model = fm.model();
  HessianCaptureHooks hooks(fm, state, model.linear_modules(), block, FakeQuantHooks::FromState(model, state));
  CaptureForward(fm, calib, batch_size, hooks, HeadSearched(model, state, search), show_progress, name);
  WeightSearchStats stats;
  for (int layer = -1; layer < model.num_layers(); ++layer) {
    stats.Merge(SearchWithHessians(model, state, layer, hooks, block, search, fm.backend().host_kernels(), with_hessian));
  }
  return stats;
}

}  // namespace qforge
