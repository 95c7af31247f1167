// The decoder forward pass over runtime ops, with every buffer in backend memory.
#include "qforge/forward/forward_model.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

// Rows of the head computed at once by TokenNll (bounds the logits buffer to kHeadChunk x vocab).
constexpr int64_t kHeadChunk = 256;

template <typename T>
T* Grow(Backend& be, Buffer& b, int64_t n) {
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
  if (b.bytes() < bytes) b = be.Alloc(bytes);
  return b.as<T>();
}

// Consecutive arrays of counts[i] T's (each 256-byte aligned) in one buffer, grown to hold them all. The
// attention's and the MLP's scratch share one such buffer (Workspace::phase): RunLayer runs all of a
// layer's attention before its MLP, so they are never live together, and a layer needs the larger of the
// two instead of their sum (the layerwise memory budget on a device).
template <typename T, size_t N>
std::array<T*, N> Carve(Backend& be, Buffer& b, const std::array<int64_t, N>& counts) {
  constexpr int64_t kAlign = 256;
  std::array<int64_t, N> offsets{};
  int64_t total = 0;
  for (size_t i = 0; i < N; ++i) {
    offsets[i] = total;
    total += (counts[i] * static_cast<int64_t>(sizeof(T)) + kAlign - 1) / kAlign * kAlign;
  }
  if (b.bytes() < total) b = be.Alloc(total);
  std::array<T*, N> out{};
  for (size_t i = 0; i < N; ++i) out[i] = reinterpret_cast<T*>(static_cast<char*>(b.data()) + offsets[i]);
  return out;
}

}  // namespace

struct ForwardModel::DeviceLayer {
  bool loaded = false;
  bool host_loaded_here = false;  // this object loaded the Model's host weights (and releases them)
  Buffer input_norm, post_norm, q_norm, k_norm;  // f32 [hidden] / [head_dim]
};

// Scratch buffers of the forward, grown on demand (a forward allocates nothing once they are large enough).
struct ForwardModel::Workspace {
  // phase: the attention's q, k, v, qh, kh, vh, attn, or the MLP's gate and up (Carve).
  Buffer xn, phase, probs, hook_in, hook_out, router, moe_out, moe_dropped, xe, eo, so, gl,
      final_xn, logits, ids, targets, topk_ids, topk_w, expert_rows, expert_w;
};

Tensor DownloadHidden(Backend& be, const HiddenStates& h) {
  Tensor t = Tensor::Zeros(DType::kF32, {h.rows(), h.dim});
  be.Download(t.mutable_raw(), h.hidden.data(), h.bytes());
  return t;
}

HiddenStates UploadHidden(Backend& be, const Tensor& hidden, int64_t batch, int64_t seq) {
  QF_CHECK(hidden.dtype() == DType::kF32 && hidden.rank() == 2 && hidden.dim(0) == batch * seq,
           "hidden states of shape {} are not [{} x {}, hidden] f32", ShapeToString(hidden.shape()), batch, seq);
  HiddenStates h;
  h.batch = batch;
  h.seq = seq;
  h.dim = hidden.dim(1);
  h.hidden = be.AllocCopy(hidden.raw(), static_cast<int64_t>(hidden.nbytes()));
  return h;
}

HiddenStates CloneHidden(Backend& be, const HiddenStates& h) {
  HiddenStates c;
  c.batch = h.batch;
  c.seq = h.seq;
  c.dim = h.dim;
  c.hidden = be.Alloc(h.bytes());
  be.Copy(c.hidden.data(), h.hidden.data(), h.bytes());
  return c;
}

ForwardModel::ForwardModel(Model& model, Backend& backend) : model_(model), be_(backend) {
  const size_t n = model_.modules().size();
  weights_.resize(n);
  biases_.resize(n);
  weight_versions_.assign(n, -1);
  weight_exact_.assign(n, 0);
  upload_ticket_.assign(n, 0);
  rows_seen_.assign(n, 0);
  for (int l = 0; l < model_.num_layers(); ++l) layers_.push_back(std::make_unique<DeviceLayer>());
  ws_ = std::make_unique<Workspace>();
  // The embedding stays as stored; rows are converted by the EmbedRows op. The CPU adopts the table now; a
  // device uploads it on the first Embed (layerwise calibration may never upload it).
  if (be_.host_accessible()) UploadEmbedding();
  final_norm_ = UploadF32(model_.ReadF32("model.norm.weight"));
  // Layers the Model already holds on the host become resident now (the CPU adopts them without copying).
  for (int l = 0; l < model_.num_layers(); ++l) {
    if (model_.IsLayerLoaded(l)) LoadLayer(l);
  }
}

ForwardModel::~ForwardModel() {
  // A background copy must not write into memory that is freed (and reused) with the weights.
  for (size_t m = 0; m < upload_ticket_.size(); ++m) {
    if (upload_ticket_[m] == 0) continue;
    try {
      be_.AwaitUpload(upload_ticket_[m]);
    } catch (const std::exception&) {  // a failed copy: nothing is waiting for its data any more
    }
  }
}

std::unique_ptr<ForwardModel> ForwardModel::Load(const std::filesystem::path& dir, const ModelLoadOptions& options,
                                                 Backend* backend) {
  std::unique_ptr<Model> m = Model::Load(dir, options);
  Model& ref = *m;
  auto fm = std::make_unique<ForwardModel>(ref, backend != nullptr ? *backend : DefaultCpuBackend());
  fm->owned_ = std::move(m);
  return fm;
}

Buffer ForwardModel::UploadHost(const Tensor& host) {
  const int64_t bytes = static_cast<int64_t>(host.nbytes());
  if (be_.host_accessible()) return be_.Adopt(host.raw(), bytes, std::make_shared<Tensor>(host));
  return be_.AllocCopy(host.raw(), bytes);
}

Buffer ForwardModel::UploadF32(const Tensor& host) {
  QF_ASSERT(host.dtype() == DType::kF32, "UploadF32 of a {} tensor", DTypeName(host.dtype()));
  return UploadHost(host);
}

void ForwardModel::DropWeight(int module) {
  FinishUpload(module);  // later ops (and reuses of the memory) come after its copy
  resident_bytes_ -= weights_[module].bytes();
  weights_[module] = Buffer();
  weight_versions_[module] = -1;
}

void ForwardModel::FinishUpload(int module) {
  if (upload_ticket_[module] == 0) return;
  be_.AwaitUpload(upload_ticket_[module]);
  upload_ticket_[module] = 0;
  model_.ReleaseStoredPages(module);
}

void ForwardModel::PrefetchLayer(int layer) {
  if (be_.host_accessible() || layer < 0 || layer >= num_layers() || layers_[layer]->loaded) return;
  for (int m : model_.layer_modules(layer).linears) {
    if (IsResident(m)) continue;
    // Only a weight whose stored bytes are its backend copy (a bf16 checkpoint in bf16 compute, f32 in
    // f32): a conversion runs on the op stream, so such a weight uploads in LoadLayer instead.
    auto owner = std::make_shared<Tensor>(model_.StoredLinearWeight(m));
    if (owner->dtype() != be_.weight_dtype()) continue;
    const int64_t version = model_.weight_version(m);
    DropWeight(m);
    const auto bytes = static_cast<int64_t>(owner->nbytes());
    weights_[m] = be_.Alloc(bytes);
    const void* host = owner->raw();
    upload_ticket_[m] = be_.UploadInBackground(weights_[m].data(), host, bytes, std::move(owner));
    if (upload_ticket_[m] == 0) model_.ReleaseStoredPages(m);
    weight_exact_[m] = 1;
    resident_bytes_ += bytes;
    weight_versions_[m] = version;
  }
}

void ForwardModel::UploadLinear(int module) {
  const int64_t version = model_.weight_version(module);
  DropWeight(module);  // free the stale copy before allocating the new one
  if (be_.host_accessible()) {
    // The CPU computes on the Model's f32 weights themselves (adopted, no copy).
    auto owner = std::make_shared<Tensor>(model_.LinearWeight(module));
    weights_[module] = be_.UploadWeight(owner->data<float>(), owner->numel(), owner);
    weight_exact_[module] = 1;
  } else {
    // A device gets the stored bytes (bf16 on disk: half an f32 upload) and converts them itself.
    auto owner = std::make_shared<Tensor>(model_.StoredLinearWeight(module));
    weights_[module] = be_.UploadWeightStored(owner->raw(), owner->dtype(), owner->numel(), owner);
    // f32 storage holds any stored value; bf16 storage only bf16 ones (a bf16 checkpoint).
    weight_exact_[module] = be_.weight_dtype() == DType::kF32 || owner->dtype() == DType::kBF16;
    model_.ReleaseStoredPages(module);
  }
  resident_bytes_ += weights_[module].bytes();
  weight_versions_[module] = version;
}

bool ForwardModel::IsResident(int module) const {
  return !weights_[module].empty() && weight_versions_[module] == model_.weight_version(module);
}

ForwardModel::EvictAfter::~EvictAfter() {
  if (on_) fm_.DropWeight(m_);
}

WeightRef ForwardModel::Weight(int module) {
  if (weights_[module].empty() || weight_versions_[module] != model_.weight_version(module)) UploadLinear(module);
  FinishUpload(module);
  return WeightRef(weights_[module].data(), be_.weight_dtype());
}

const float* ForwardModel::RowsAsF32(Backend& be, const int32_t* iota, WeightRef w, int64_t r0, int64_t n,
                                    int64_t cols, int64_t max_rows, Buffer& scratch) {
  const void* src = static_cast<const char*>(w.data) + static_cast<size_t>(r0 * cols) * DTypeSize(w.dtype);
  if (w.dtype == DType::kF32) return static_cast<const float*>(src);
  // bf16 rows become f32 through the embedding op (rows 0, 1, 2, ... of the chunk): exact.
  if (scratch.empty()) scratch = be.Alloc(max_rows * cols * static_cast<int64_t>(sizeof(float)));
  be.EmbedRows(src, w.dtype, iota, scratch.as<float>(), n, cols);
  return scratch.as<const float>();
}

int64_t ForwardModel::ChunkRows(int64_t chunk_rows, int64_t rows, int64_t cols) {
  constexpr int64_t kMaxChunkBytes = int64_t{32} << 20;
  return std::max<int64_t>(1, std::min({chunk_rows, rows, kMaxChunkBytes / (4 * std::max<int64_t>(cols, 1))}));
}

namespace {

Buffer MakeIota(Backend& be, int64_t n) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
  return be.AllocCopy(idx.data(), static_cast<int64_t>(idx.size() * sizeof(int32_t)));
}

}  // namespace

const int32_t* ForwardModel::Iota(int64_t n) {
  if (iota_len_ < n) {
    iota_ = MakeIota(be_, n);
    iota_len_ = n;
  }
  return iota_.as<const int32_t>();
}

std::optional<std::vector<float>> ForwardModel::WeightAmax(int module, const QuantSpec& spec, std::string_view what,
                                                           int64_t chunk_rows, bool keep_resident) {
  const ModuleInfo& mi = model_.modules().at(module);
  const bool was_resident = IsResident(module);
  const WeightRef w = Weight(module);
  EvictAfter evict(*this, module, !keep_resident && !was_resident);
  if (!weight_exact_[module]) return std::nullopt;
  const int64_t rows = mi.out_features, cols = mi.in_features;
  const std::vector<int64_t> shape = {rows, cols};
  // One amax over the whole tensor (per tensor, NVFP4's global amax, constant amax) is the max of the
  // amax of row chunks: such specs go chunk by chunk, so a bf16 weight needs only a chunk of f32 scratch.
  const auto amax_shape = AmaxShape(spec, shape);
  // (NVFP4's dynamic block spec has the [] shape: its global amax, max |w|, goes by chunks too.)
  const bool per_tensor = amax_shape.has_value() && amax_shape->empty();
  const int64_t step = per_tensor ? ChunkRows(chunk_rows, rows, cols) : rows;
  Buffer f32;
  std::vector<float> result;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    const float* x = RowsAsF32(w, r0, n, cols, step, f32);
    std::vector<float> part;
    try {
      part = be_.QuantAmax(spec, x, std::vector<int64_t>{n, cols}, what);
    } catch (const Error&) {
      if (step == rows) throw;
      return std::nullopt;  // the host path names the offending element with its index in the whole weight
    }
    if (result.empty()) {
      result = std::move(part);
    } else {
      QF_ASSERT(part.size() == result.size(), "per-tensor amax of {} values", part.size());
      for (size_t i = 0; i < part.size(); ++i) result[i] = std::max(result[i], part[i]);
    }
  }
  return result;
}

std::optional<std::vector<int32_t>> ForwardModel::SweepNvfp4Weight(int module, std::span<const float> scales,
                                                                   int64_t chunk_rows) {
  const ModuleInfo& mi = model_.modules().at(module);
  const int64_t rows = mi.out_features, cols = mi.in_features;
  if (rows <= 0 || cols <= 0) return std::nullopt;
  const bool was_resident = IsResident(module);
  const WeightRef w = Weight(module);
  EvictAfter evict(*this, module, !was_resident);
  if (!weight_exact_[module]) return std::nullopt;
  const int64_t nb = (cols + 15) / 16;
  Buffer index = be_.Alloc(rows * nb * static_cast<int64_t>(sizeof(int32_t)));
  const int64_t step = ChunkRows(chunk_rows, rows, cols);
  Buffer f32;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    const float* x = RowsAsF32(w, r0, n, cols, step, f32);
    if (!be_.Nvfp4SweepBlocks(x, n, cols, scales, index.as<int32_t>() + r0 * nb)) return std::nullopt;
  }
  std::vector<int32_t> out(static_cast<size_t>(rows * nb));
  be_.Download(out.data(), index.data(), static_cast<int64_t>(out.size() * sizeof(int32_t)));
  return out;
}

std::optional<EncodedWeight> ForwardModel::EncodeWeight(int module, PackFormat format, const PackInputs& in,
                                                        std::string_view what, int64_t chunk_rows, Backend* ops) {
  const ModuleInfo& mi = model_.modules().at(module);
  const int64_t rows = mi.out_features, cols = mi.in_features;
  const bool nvfp4 = format == PackFormat::kNvfp4 && !in.nvfp4_static && in.global_amax && cols % 16 == 0;
  const bool fp8 = (format == PackFormat::kFp8 && in.amax.size() == 1) ||
                   (format == PackFormat::kFp8PerChannel && static_cast<int64_t>(in.amax.size()) == rows);
  if ((!nvfp4 && !fp8) || rows <= 0 || cols <= 0) return std::nullopt;
  // A weight that was not resident (layerwise calibration released it) is uploaded for this call only; on
  // another thread's backend (`ops`) only a resident weight is encoded, and nothing of this object changes.
  const bool was_resident = IsResident(module);
  if (ops != nullptr && (!was_resident || upload_ticket_[module] != 0 || !weight_exact_[module])) return std::nullopt;
  Backend& be = ops != nullptr ? *ops : be_;
  const WeightRef w = ops != nullptr ? WeightRef(weights_[module].data(), be_.weight_dtype()) : Weight(module);
  EvictAfter evict(*this, module, !was_resident);
  if (!weight_exact_[module]) return std::nullopt;

  const std::vector<int64_t> shape = {rows, cols};
  const PackedLayout layout = PackedLayoutOf(format, shape, what);
  EncodedWeight e;
  PackedWeight& p = e.packed;
  p.format = format;
  p.shape = shape;
  p.weight_shape = layout.weight_shape;
  p.scale_shape = layout.scale_shape;
  const int64_t code_bytes = nvfp4 ? rows * cols / 2 : rows * cols;
  Buffer codes = be.Alloc(code_bytes), scales;
  float ws2 = 0;
  if (nvfp4) {
    ws2 = Nvfp4DynamicScale2(*in.global_amax);
    p.weight_scale_2 = ws2;
    scales = be.Alloc(rows * cols / 16);
  } else {
    p.scale_f32.resize(in.amax.size());
    for (size_t i = 0; i < in.amax.size(); ++i) p.scale_f32[i] = Fp8ExportScale(in.amax[i]);
    scales = be.AllocCopy(p.scale_f32.data(), static_cast<int64_t>(p.scale_f32.size() * sizeof(float)));
  }
  const int64_t step = ChunkRows(chunk_rows, rows, cols);
  Buffer f32, own_iota;
  const int32_t* iota = nullptr;
  if (w.dtype != DType::kF32) {
    if (ops != nullptr) own_iota = MakeIota(be, step);
    iota = ops != nullptr ? own_iota.as<const int32_t>() : Iota(step);
  }
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    const float* x = RowsAsF32(be, iota, w, r0, n, cols, step, f32);
    ErrorSums s;
    if (nvfp4) {
      uint8_t* pc = codes.as<uint8_t>() + r0 * cols / 2;
      uint8_t* sc = scales.as<uint8_t>() + r0 * cols / 16;
      // false: a non-finite weight, or a weight_scale_2 the device declines; the host names / handles it.
      if (!be.PackNvfp4(x, n, cols, ws2, pc, sc)) return std::nullopt;
      s = be.Nvfp4Error(x, pc, sc, n, cols, ws2);
    } else {
      const bool per_tensor = format == PackFormat::kFp8;
      const float* sc = scales.as<const float>() + (per_tensor ? 0 : r0);
      const int64_t group = per_tensor ? n * cols : cols;
      uint8_t* pc = codes.as<uint8_t>() + r0 * cols;
      if (!be.EncodeFp8(x, sc, n * cols, group, pc)) return std::nullopt;
      s = be.Fp8Error(x, pc, sc, n * cols, group);
    }
    e.sq_err += s.sq_err;
    e.sq_ref += s.sq_ref;
  }
  p.weight.resize(static_cast<size_t>(code_bytes));
  be.Download(p.weight.data(), codes.data(), code_bytes);
  if (nvfp4) {
    p.scale_bytes.resize(static_cast<size_t>(rows * cols / 16));
    be.Download(p.scale_bytes.data(), scales.data(), rows * cols / 16);
  }
  return e;
}

void ForwardModel::ReleaseEmbedding() { embed_table_ = Buffer(); }

void ForwardModel::ReleaseHead() {
  DropWeight(model_.lm_head_module());
}

void ForwardModel::UploadEmbedding() {
  if (!embed_table_.empty()) return;
  const Tensor& table = model_.embed_table();
  embed_dtype_ = table.dtype();
  embed_table_ = UploadHost(table);
}

const float* ForwardModel::Bias(int module) const {
  return biases_[module].empty() ? nullptr : biases_[module].as<const float>();
}

void ForwardModel::LoadLayer(int layer) {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  DeviceLayer& D = *layers_[layer];
  if (D.loaded) return;
  const Model::LayerModules& L = model_.layer_modules(layer);
  // The CPU computes on the Model's own f32 host weights; a device gets the checkpoint's stored bytes
  // (UploadLinear) and needs no host conversion at all.
  if (be_.host_accessible() && !model_.IsLayerLoaded(layer)) {
    model_.LoadLayer(layer);
    D.host_loaded_here = true;
  }
  for (int m : L.linears) {
    (void)Weight(m);  // uploads unless weight amax already did
    Tensor b = model_.LinearBias(m);
    if (b.defined() && b.numel() > 0) biases_[m] = UploadF32(b);
  }
  D.input_norm = UploadF32(model_.ReadF32(L.input_norm_name));
  D.post_norm = UploadF32(model_.ReadF32(L.post_norm_name));
  if (!L.q_norm_name.empty()) {
    D.q_norm = UploadF32(model_.ReadF32(L.q_norm_name));
    D.k_norm = UploadF32(model_.ReadF32(L.k_norm_name));
  }
  D.loaded = true;
}

void ForwardModel::ReleaseLayer(int layer) {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  DeviceLayer& D = *layers_[layer];
  for (int m : model_.layer_modules(layer).linears) {
    DropWeight(m);
    biases_[m] = Buffer();
  }
  D.input_norm = Buffer();
  D.post_norm = Buffer();
  D.q_norm = Buffer();
  D.k_norm = Buffer();
  D.loaded = false;
  D.host_loaded_here = false;
  model_.ReleaseLayer(layer);
}

bool ForwardModel::IsLayerLoaded(int layer) const { return layers_.at(layer)->loaded; }

void ForwardModel::ResetRowsSeen() { std::fill(rows_seen_.begin(), rows_seen_.end(), 0); }

void ForwardModel::EnsureRope(int64_t seq) {
  if (seq <= rope_len_) return;
  std::vector<float> cos, sin;
  RopeTables(model_.rope(), seq, &cos, &sin);
  rope_cos_ = be_.AllocCopy(cos.data(), static_cast<int64_t>(cos.size() * sizeof(float)));
  rope_sin_ = be_.AllocCopy(sin.data(), static_cast<int64_t>(sin.size() * sizeof(float)));
  rope_len_ = seq;
}

void ForwardModel::EnsureHead() { (void)Weight(model_.lm_head_module()); }

HiddenStates ForwardModel::Embed(std::span<const int32_t> ids, int64_t batch, int64_t seq) {
  QF_CHECK(batch > 0 && seq > 0 && static_cast<int64_t>(ids.size()) == batch * seq,
           "Embed: {} ids for batch {} x seq {}", ids.size(), batch, seq);
  const ModelConfig& c = config();
  for (int64_t t = 0; t < batch * seq; ++t) {
    QF_CHECK(ids[t] >= 0 && ids[t] < c.vocab_size, "token id {} at position {} is outside the vocabulary [0, {})",
             ids[t], t, c.vocab_size);
  }
  const int64_t T = batch * seq, H = c.hidden_size;
  HiddenStates h;
  h.batch = batch;
  h.seq = seq;
  h.dim = H;
  h.hidden = be_.Alloc(T * H * static_cast<int64_t>(sizeof(float)));
  if (embed_rows_from_host_ && !be_.host_accessible() && embed_table_.empty()) {
    // The batch's rows of the host table, as stored, uploaded and widened by the same op: the same values
    // as a lookup in the uploaded table.
    const Tensor& table = model_.embed_table();
    const size_t row_bytes = static_cast<size_t>(H) * DTypeSize(table.dtype());
    std::vector<char>& rows = embed_staging_;  // kept: its pages are touched once, not once per batch
    rows.resize(static_cast<size_t>(T) * row_bytes);
    const char* src = static_cast<const char*>(table.raw());
    // Parallel: the rows are scattered over the (mmap'd) table, whose first touch faults pages in.
#pragma omp parallel for schedule(static) if (T * static_cast<int64_t>(row_bytes) > (int64_t{1} << 22))
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(rows.data() + static_cast<size_t>(t) * row_bytes, src + static_cast<size_t>(ids[t]) * row_bytes,
                  row_bytes);
    }
    const Buffer dev_rows = be_.AllocCopy(rows.data(), static_cast<int64_t>(rows.size()));
    be_.EmbedRows(dev_rows.data(), table.dtype(), Iota(T), h.data(), T, H);
    return h;
  }
  int32_t* dids = Grow<int32_t>(be_, ws_->ids, T);
  be_.Upload(dids, ids.data(), T * static_cast<int64_t>(sizeof(int32_t)));
  UploadEmbedding();
  be_.EmbedRows(embed_table_.data(), embed_dtype_, dids, h.data(), T, H);
  return h;
}

void ForwardModel::Linear(int module, const float* x, int64_t rows, float* y, bool accumulate, ForwardHooks* hooks) {
  const ModuleInfo& mi = model_.modules()[module];
  rows_seen_[module] += rows;
  const WeightRef w = Weight(module);
  const float* b = Bias(module);
  if (hooks == nullptr) {
    be_.Gemm(x, w, b, y, rows, mi.out_features, mi.in_features, accumulate);
    return;
  }
  const float* in = x;
  if (hooks->ModifiesActivations()) {
    float* copy = Grow<float>(be_, ws_->hook_in, rows * mi.in_features);
    be_.Copy(copy, x, rows * mi.in_features * static_cast<int64_t>(sizeof(float)));
    hooks->OnLinearInput(be_, module, copy, rows, mi.in_features);
    in = copy;
  } else {
    // Read-only hooks (ModifiesActivations() == false) never write through this pointer.
    hooks->OnLinearInput(be_, module, const_cast<float*>(x), rows, mi.in_features);
  }
  if (accumulate) {
    float* tmp = Grow<float>(be_, ws_->hook_out, rows * mi.out_features);
    be_.Gemm(in, w, b, tmp, rows, mi.out_features, mi.in_features, false);
    hooks->OnLinearOutput(be_, module, tmp, rows, mi.out_features);
    be_.Add(y, tmp, rows * mi.out_features);
  } else {
    be_.Gemm(in, w, b, y, rows, mi.out_features, mi.in_features, false);
    hooks->OnLinearOutput(be_, module, y, rows, mi.out_features);
  }
}

void ForwardModel::SharedLinears(std::span<const int> modules, const float* x, int64_t rows,
                                 std::span<float* const> ys, ForwardHooks* hooks) {
  QF_ASSERT(modules.size() == ys.size(), "SharedLinears: {} modules, {} outputs", modules.size(), ys.size());
  if (hooks != nullptr && hooks->ModifiesActivations()) {
    for (size_t i = 0; i < modules.size(); ++i) Linear(modules[i], x, rows, ys[i], false, hooks);
    return;
  }
  const int64_t k = model_.modules()[modules[0]].in_features;
  std::vector<Backend::GemmOut> outs;
  for (size_t i = 0; i < modules.size(); ++i) {
    const ModuleInfo& mi = model_.modules()[modules[i]];
    QF_ASSERT(mi.in_features == k, "SharedLinears: {} reads {} features, not {}", mi.name, mi.in_features, k);
    rows_seen_[modules[i]] += rows;
    outs.push_back({Weight(modules[i]), Bias(modules[i]), ys[i], mi.out_features});
  }
  // Read-only hooks never write through this pointer.
  if (hooks != nullptr) hooks->OnLinearInputs(be_, modules, const_cast<float*>(x), rows, k);
  be_.GemmShared(x, rows, k, outs);
  if (hooks != nullptr) {
    for (size_t i = 0; i < modules.size(); ++i) hooks->OnLinearOutput(be_, modules[i], ys[i], rows, outs[i].n);
  }
}

void ForwardModel::GatedMlp(const int ids[3], const float* x, int64_t rows, float* out, bool accumulate,
                            ForwardHooks* hooks) {
  const ModuleInfo& gm = model_.modules()[ids[0]];
  const int64_t inter = gm.out_features;
  const auto [g, u] = Carve<float, 2>(be_, ws_->phase, {rows * inter, rows * inter});
  // gate and up fuse when nothing needs their outputs apart and neither has a bias (the backend's
  // GatedLinear, after one read-only look at the shared input); the whole MLP (GatedMlp) when, beyond that,
  // down_proj has no bias, its output is not wanted, and its input h at most as max |h|: h then never
  // exists in f32.
  const auto quiet = [&](int m) { return Bias(m) == nullptr && (hooks == nullptr || !hooks->WantsLinearOutput(m)); };
  const bool fuse_gate_up = (hooks == nullptr || !hooks->ModifiesActivations()) && quiet(ids[0]) && quiet(ids[1]);
  if (fuse_gate_up && quiet(ids[2])) {
    const ForwardHooks::InputTap tap =
        hooks == nullptr ? ForwardHooks::InputTap{false, nullptr} : hooks->LinearInputTap(be_, ids[2], rows, inter);
    if (!tap.needed || tap.amax_slot != nullptr) {
      for (int i = 0; i < 3; ++i) rows_seen_[ids[i]] += rows;
      if (hooks != nullptr) hooks->OnLinearInputs(be_, std::span<const int>(ids, 2), const_cast<float*>(x), rows,
                                                  gm.in_features);
      const ModuleInfo& dm = model_.modules()[ids[2]];
      // With hooks the residual is added after the product, as Linear does for hooked calls, so that the
      // calibration forward computes the same values fused or not.
      const bool add_after = accumulate && hooks != nullptr;
      float* y = add_after ? Grow<float>(be_, ws_->hook_out, rows * dm.out_features) : out;
      be_.GatedMlp(x, rows, gm.in_features, Weight(ids[0]), Weight(ids[1]), inter, Weight(ids[2]), dm.out_features, y,
                   accumulate && !add_after, g, u, tap.amax_slot);
      if (add_after) be_.Add(out, y, rows * dm.out_features);
      return;
    }
  }
  if (fuse_gate_up) {
    rows_seen_[ids[0]] += rows;
    rows_seen_[ids[1]] += rows;
    if (hooks != nullptr) hooks->OnLinearInputs(be_, std::span<const int>(ids, 2), const_cast<float*>(x), rows,
                                                gm.in_features);
    be_.GatedLinear(x, Weight(ids[0]), Weight(ids[1]), g, u, rows, inter, gm.in_features);
  } else {
    float* const ys[2] = {g, u};
    SharedLinears(std::span<const int>(ids, 2), x, rows, ys, hooks);
    be_.SiluMul(g, u, g, rows * inter);
  }
  Linear(ids[2], g, rows, out, accumulate, hooks);
}

void ForwardModel::Attention(int layer, float* hid, int64_t B, int64_t S, ForwardHooks* hooks) {
  const ModelConfig& c = config();
  const Model::LayerModules& L = model_.layer_modules(layer);
  const DeviceLayer& D = *layers_[layer];
  const int64_t T = B * S, H = c.hidden_size, Dh = c.head_dim;
  const int64_t Hq = c.num_heads, Hkv = c.num_kv_heads;
  const float eps = static_cast<float>(c.rms_norm_eps);
  float* xn = Grow<float>(be_, ws_->xn, T * H);
  be_.RmsNorm(hid, D.input_norm.as<const float>(), xn, T, H, eps);
  const int64_t nq = T * Hq * Dh, nkv = T * Hkv * Dh;
  const auto [q, k, v, qh, kh, vh, attn] = Carve<float, 7>(be_, ws_->phase, {nq, nkv, nkv, nq, nkv, nkv, nq});
  const int qkv[3] = {L.q, L.k, L.v};
  float* const qkv_out[3] = {q, k, v};
  SharedLinears(qkv, xn, T, qkv_out, hooks);
  if (!D.q_norm.empty()) {
    be_.RmsNorm(q, D.q_norm.as<const float>(), q, T * Hq, Dh, eps);
    be_.RmsNorm(k, D.k_norm.as<const float>(), k, T * Hkv, Dh, eps);
  }
  EnsureRope(S);
  be_.RopeToHeads(q, qh, B, Hq, S, Dh, rope_cos_.as<const float>(), rope_sin_.as<const float>());
  be_.RopeToHeads(k, kh, B, Hkv, S, Dh, rope_cos_.as<const float>(), rope_sin_.as<const float>());
  be_.SwapMiddleAxes(v, vh, B, S, Hkv, Dh);
  if (hooks != nullptr) {
    hooks->OnAttentionBmm(be_, L.attention, BmmInput::kQ, qh, B, Hq, S, Dh);
    hooks->OnAttentionBmm(be_, L.attention, BmmInput::kK, kh, B, Hkv, S, Dh);
    hooks->OnAttentionBmm(be_, L.attention, BmmInput::kV, vh, B, Hkv, S, Dh);
  }
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  if (hooks != nullptr && hooks->WantsAttentionProbs(L.attention)) {
    float* probs = Grow<float>(be_, ws_->probs, B * Hq * S * S);
    be_.CausalAttentionProbs(qh, kh, probs, B, Hq, Hkv, S, Dh, scale);
    hooks->OnAttentionProbs(be_, L.attention, probs, B, Hq, S);
    be_.AttentionApply(probs, vh, attn, B, Hq, Hkv, S, Dh);
  } else {
    be_.CausalAttention(qh, kh, vh, attn, B, Hq, Hkv, S, Dh, scale);
  }
  Linear(L.o, attn, T, hid, /*accumulate=*/true, hooks);
}

void ForwardModel::MoeBlock(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks) {
  const ModelConfig& c = config();
  const std::optional<double> ratio = hooks != nullptr ? hooks->MoeCalibExpertsRatio() : std::nullopt;
  if (!ratio) return MoeRouted(layer, x, rows, h, hooks, c.top_k);
  // moe_calib_experts_ratio: the hooks see a routing to more experts (Python's round: half to even), whose
  // output is dropped; the block's output is the original routing's, computed without hooks (its inputs
  // are a subset of what the hooks already saw), and rows_seen() keeps the first routing's counts.
  const int64_t wide = std::max<int64_t>(c.top_k, static_cast<int64_t>(std::nearbyint(c.num_experts * *ratio)));
  float* dropped = Grow<float>(be_, ws_->moe_dropped, rows * c.hidden_size);
  MoeRouted(layer, x, rows, dropped, hooks, wide);
  const std::vector<int64_t> counted = rows_seen_;
  MoeRouted(layer, x, rows, h, nullptr, c.top_k);
  rows_seen_ = counted;
}

void ForwardModel::MoeRouted(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks, int64_t top_k) {
  const ModelConfig& c = config();
  const Model::LayerModules& L = model_.layer_modules(layer);
  const int64_t E = c.num_experts, K = top_k, H = c.hidden_size;
  float* logits = Grow<float>(be_, ws_->router, rows * E);
  Linear(L.router, x, rows, logits, false, hooks);
  int32_t* topk_ids = Grow<int32_t>(be_, ws_->topk_ids, rows * K);
  float* topk_w = Grow<float>(be_, ws_->topk_w, rows * K);
  be_.TopKRouting(logits, rows, E, static_cast<int>(K), c.norm_topk_prob, topk_ids, topk_w);
  int32_t* expert_rows = Grow<int32_t>(be_, ws_->expert_rows, rows * K);
  float* expert_w = Grow<float>(be_, ws_->expert_w, rows * K);
  // Per-expert row counts are the only values that reach the host (they size the expert GEMMs).
  const std::vector<int64_t> start =
      be_.GroupRowsByExpert(topk_ids, topk_w, rows, static_cast<int>(K), E, expert_rows, expert_w);
  float* acc = Grow<float>(be_, ws_->moe_out, rows * H);
  be_.Zero(acc, rows * H * static_cast<int64_t>(sizeof(float)));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    const int32_t* idx = expert_rows + start[e];
    float* xe = Grow<float>(be_, ws_->xe, n * H);
    float* eo = Grow<float>(be_, ws_->eo, n * H);
    be_.GatherRows(x, idx, xe, n, H);
    GatedMlp(L.experts[e].data(), xe, n, eo, false, hooks);
    be_.ScatterAddRows(eo, idx, expert_w + start[e], acc, n, H);
  }
  if (L.shared_gate >= 0) {
    float* so = Grow<float>(be_, ws_->so, rows * H);
    float* gl = Grow<float>(be_, ws_->gl, rows);
    GatedMlp(L.shared, x, rows, so, false, hooks);
    Linear(L.shared_gate, x, rows, gl, false, hooks);
    be_.SigmoidScaleRows(so, gl, rows, H);
    be_.Add(acc, so, rows * H);
  }
  be_.Add(h, acc, rows * H);
}

void ForwardModel::RunLayer(int layer, HiddenStates& h, ForwardHooks* hooks) {
  const ModelConfig& c = config();
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  QF_CHECK(!h.hidden.empty() && h.dim == c.hidden_size && h.hidden.bytes() >= h.bytes(),
           "RunLayer: hidden states are [{} x {}, {}], expected [{} x {}, {}]", h.batch, h.seq, h.dim, h.batch, h.seq,
           c.hidden_size);
  QF_CHECK(h.hidden.backend() == &be_, "RunLayer: hidden states live on another backend than the model's ({})",
           be_.name());
  QF_CHECK(!c.sliding_window || h.seq <= *c.sliding_window,
           "sequence length {} exceeds the model's sliding_window {} (sliding-window attention is not implemented)",
           h.seq, *c.sliding_window);
  LoadLayer(layer);
  const Model::LayerModules& L = model_.layer_modules(layer);
  const int64_t T = h.rows(), H = c.hidden_size, S = h.seq;
  // Parts of the batch: whole sequences for attention, as many rows for a dense MLP (everything at once
  // unless chunking is on and the hooks allow it). A MoE block always takes the whole batch: its expert
  // GEMMs would see other row counts per part, and a GEMM's rounding may depend on its row count.
  const bool row_local = !be_.host_accessible() && (hooks == nullptr || hooks->RowLocal());
  const bool chunked = max_chunk_rows_ > 0 && row_local && T > max_chunk_rows_;
  const int64_t seqs = chunked ? std::max<int64_t>(1, max_chunk_rows_ / S) : h.batch;
  float* hid = h.data();
  for (int64_t b0 = 0; b0 < h.batch; b0 += seqs) {
    Attention(layer, hid + b0 * S * H, std::min(seqs, h.batch - b0), S, hooks);
  }
  int64_t rows = L.moe ? T : seqs * S;
  if (!L.moe && max_mlp_rows_ > 0 && row_local) rows = std::min(rows, max_mlp_rows_);
  float* xn = Grow<float>(be_, ws_->xn, std::min(rows, T) * H);
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t n = std::min(rows, T - r0);
    be_.RmsNorm(hid + r0 * H, layers_[layer]->post_norm.as<const float>(), xn, n, H,
                static_cast<float>(c.rms_norm_eps));
    if (L.moe) {
      MoeBlock(layer, xn, n, hid + r0 * H, hooks);
    } else {
      GatedMlp(L.mlp, xn, n, hid + r0 * H, /*accumulate=*/true, hooks);
    }
  }
}

const float* ForwardModel::FinalNormed(const HiddenStates& h) {
  const int64_t T = h.rows(), H = config().hidden_size;
  QF_CHECK(h.dim == H && h.hidden.bytes() >= h.bytes(), "hidden states are [{}, {}], expected [{}, {}]", T, h.dim, T,
           H);
  float* xn = Grow<float>(be_, ws_->final_xn, T * H);
  be_.RmsNorm(h.data(), final_norm_.as<const float>(), xn, T, H, static_cast<float>(config().rms_norm_eps));
  return xn;
}

Tensor ForwardModel::Logits(const HiddenStates& h, ForwardHooks* hooks) {
  EnsureHead();
  const float* xn = FinalNormed(h);
  const int64_t T = h.rows(), V = config().vocab_size;
  float* dl = Grow<float>(be_, ws_->logits, T * V);
  Linear(model_.lm_head_module(), xn, T, dl, false, hooks);
  Tensor logits = Tensor::Zeros(DType::kF32, {T, V});
  be_.Download(logits.mutable_raw(), dl, T * V * static_cast<int64_t>(sizeof(float)));
  return logits;
}

void ForwardModel::TokenNll(const HiddenStates& h, std::span<const int32_t> targets, std::span<double> nll,
                            ForwardHooks* hooks) {
  const int64_t T = h.rows(), V = config().vocab_size, H = config().hidden_size;
  QF_CHECK(static_cast<int64_t>(targets.size()) == T && static_cast<int64_t>(nll.size()) == T,
           "TokenNll: {} targets and {} outputs for {} rows", targets.size(), nll.size(), T);
  for (int64_t t = 0; t < T; ++t) {
    QF_CHECK(targets[t] >= 0 && targets[t] < V, "target id {} at row {} is outside the vocabulary [0, {})", targets[t],
             t, V);
  }
  EnsureHead();
  const float* xn = FinalNormed(h);
  int32_t* dt = Grow<int32_t>(be_, ws_->targets, T);
  be_.Upload(dt, targets.data(), T * static_cast<int64_t>(sizeof(int32_t)));
  for (int64_t r0 = 0; r0 < T; r0 += kHeadChunk) {
    const int64_t n = std::min(kHeadChunk, T - r0);
    float* logits = Grow<float>(be_, ws_->logits, n * V);
    Linear(model_.lm_head_module(), xn + r0 * H, n, logits, false, hooks);
    be_.CrossEntropy(logits, dt + r0, nll.data() + r0, n, V);
  }
}

Tensor ForwardModel::Forward(std::span<const int32_t> ids, int64_t batch, int64_t seq, ForwardHooks* hooks) {
  HiddenStates h = Embed(ids, batch, seq);
  for (int l = 0; l < num_layers(); ++l) RunLayer(l, h, hooks);
  return Logits(h, hooks);
}

}  // namespace qforge
