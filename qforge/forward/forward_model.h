// The forward pass of a Model (model/) on a compute Backend (runtime/): weights resident in backend memory
// per decoder layer, a workspace of backend buffers, hooks at every quantization point, and a forward that
// can run one decoder layer at a time (layerwise calibration).
//
// Numerics: as the backend's compute dtype says (runtime/backend.h): fp32 everywhere on the CPU (what
// transformers does with an fp32 model); bf16 weights and activations with fp32 accumulation on CUDA by
// default (what transformers does with a bf16 model).
//
// Batches: `batch` sequences of equal length `seq`, positions 0..seq-1 in every sequence (no padding, no
// KV cache). Hidden states are the residual stream [batch*seq, hidden_size], token-major, in backend memory.
//
// Thread-safety: a ForwardModel is used from one thread at a time (ops parallelize internally).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "qforge/model/model.h"
#include "qforge/model/weight_encoder.h"
#include "qforge/runtime/backend.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

// Callbacks at the quantization points of the forward pass. quant/ and calib/ implement them; the forward
// knows nothing about quantizers. Every array is f32, row-major, in the memory of `be` (the forward's
// backend): hooks compute on it with backend ops (QuantAmax, FakeQuant), so no activation leaves the
// device. `module` indexes Model::modules(). With hooks == nullptr the forward makes no call and no copy.
class ForwardHooks {
 public:
  virtual ~ForwardHooks() = default;
  // False if the hooks only read activations (amax collection): the forward then passes its buffers
  // without copying, and hooks must not write to them.
  virtual bool ModifiesActivations() const { return true; }
  // True if calling the hooks on parts of a batch (row ranges of a Linear's input or output, groups of
  // whole sequences for the attention hooks) has exactly the effect of one call on all of it, so the
  // forward may split a batch (ForwardModel::set_max_chunk_rows).
  virtual bool RowLocal() const { return false; }
  // The activation entering Linear `module`: x [rows, cols = in_features]. May be changed in place (fake
  // quant); each Linear gets its own copy when ModifiesActivations(), so q/k/v (and gate/up) never see
  // each other's changes. For a routed expert only the rows routed to it are passed; an expert that got no
  // token is not called.
  virtual void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) {}
  // The one input x that Linears `modules` all read (q/k/v, gate/up), for read-only hooks
  // (ModifiesActivations() false): the forward then runs their GEMMs together. The default calls
  // OnLinearInput per module; hooks that compute something per distinct quantizer may do it once.
  virtual void OnLinearInputs(Backend& be, std::span<const int> modules, float* x, int64_t rows, int64_t cols) {
    for (int m : modules) OnLinearInput(be, m, x, rows, cols);
  }
  // False if OnLinearOutput of `module` does nothing: the forward may then fuse that output into the op
  // that consumes it (the gated MLP's gate and up products are never stored apart).
  virtual bool WantsLinearOutput(int module) const { return true; }
  // What read-only hooks need of Linear `module`'s input [rows, cols], so that the forward may fuse the op
  // that produces it (the gated MLP's down_proj input): nothing (needed = false), only max |x| folded into
  // a slot of backend memory (amax_slot, Backend::AmaxFold's semantics; the hooks then count that fold as
  // their OnLinearInput), or, by default, the tensor itself through OnLinearInput.
  struct InputTap {
    bool needed = true;
    uint32_t* amax_slot = nullptr;
  };
  virtual InputTap LinearInputTap(Backend& be, int module, int64_t rows, int64_t cols) { return {}; }
  // moe_calib_experts_ratio: when set, each MoE block first routes its tokens to max(top_k, round(experts *
  // ratio)) experts with these hooks (its output discarded), then computes its real output with the original
  // top_k without hooks; rows_seen() counts the first routing.
  virtual std::optional<double> MoeCalibExpertsRatio() const { return std::nullopt; }
  // The output of Linear `module` (bias included): y [rows, cols = out_features], changeable in place.
  virtual void OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) {}
  // q, k or v of attention `module` after RoPE (and q_norm / k_norm), heads-major
  // [batch, heads, seq, head_dim] (heads = num_kv_heads for k and v), changeable in place.
  virtual void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads,
                              int64_t seq, int64_t head_dim) {}
  // Whether attention `module` should expose its softmax probabilities (p_bmm_quantizer). When true the
  // forward computes attention in two steps (probabilities materialized, [batch, heads, seq, seq] f32)
  // and calls OnAttentionProbs in between; otherwise the fused kernel runs.
  virtual bool WantsAttentionProbs(int module) const { return false; }
  // probs [batch, heads, seq, seq]: row i holds the softmax over keys j ≤ i (zeros for j > i); changeable
  // in place before they multiply v.
  virtual void OnAttentionProbs(Backend& be, int module, float* probs, int64_t batch, int64_t heads, int64_t seq) {}
};

// The residual stream of a batch: hidden [batch*seq, dim] f32 in backend memory (owned).
struct HiddenStates {
  Buffer hidden;
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t dim = 0;
  int64_t rows() const { return batch * seq; }
  float* data() const { return hidden.as<float>(); }
  int64_t bytes() const { return rows() * dim * static_cast<int64_t>(sizeof(float)); }
};

// Host copy of hidden states / upload of a host [batch*seq, dim] f32 tensor (checkpoint files, tests).
Tensor DownloadHidden(Backend& be, const HiddenStates& h);
HiddenStates UploadHidden(Backend& be, const Tensor& hidden, int64_t batch, int64_t seq);
// A backend copy of `h` (same backend).
HiddenStates CloneHidden(Backend& be, const HiddenStates& h);

class ForwardModel {
 public:
  // Runs `model` on `backend` (both not owned; they must outlive this object). Uploads the final norm now,
  // the embedding table on the first Embed (adopted now on the CPU); decoder layers upload on first use or
  // LoadLayer().
  ForwardModel(Model& model, Backend& backend);
  // Model::Load(dir, options) run on `backend` (nullptr: DefaultCpuBackend()); the result owns the Model.
  static std::unique_ptr<ForwardModel> Load(const std::filesystem::path& dir, const ModelLoadOptions& options = {},
                                            Backend* backend = nullptr);
  ~ForwardModel();
  ForwardModel(const ForwardModel&) = delete;
  ForwardModel& operator=(const ForwardModel&) = delete;

  Model& model() const { return model_; }
  Backend& backend() const { return be_; }
  const ModelConfig& config() const { return model_.config(); }
  const std::vector<ModuleInfo>& modules() const { return model_.modules(); }
  int num_layers() const { return model_.num_layers(); }

  // --- weight residency in backend memory ---
  // Makes layer `layer`'s weights resident on the backend (loading the host weights first if needed).
  void LoadLayer(int layer);
  // Starts uploading layer `layer`'s Linear weights in the background (Backend::UploadInBackground), to
  // overlap with the current layer's compute; LoadLayer / the first use of a weight waits for its copy on
  // the device only. Weights whose stored dtype is not the backend's weight dtype, and norms and biases,
  // upload in LoadLayer. No-op on a host-accessible backend or for a loaded layer.
  void PrefetchLayer(int layer);
  // Frees the layer's backend weights, and its host weights (Model::ReleaseLayer).
  void ReleaseLayer(int layer);
  bool IsLayerLoaded(int layer) const;
  // Bytes of weights resident on the backend now.
  int64_t resident_weight_bytes() const { return resident_bytes_; }
  // Max calibration of Linear `module`'s weight by the backend (QuantAmax on its resident copy, uploaded
  // if needed; numerics ComputeAmax's values), or nullopt when that copy is not exactly the Model's weight
  // (f32 weights stored in bf16): the caller then calibrates the host weight. Values are bit-identical
  // either way.
  // Per-tensor specs go `chunk_rows` rows at a time (a chunk of f32 scratch for a bf16 weight).
  // keep_resident = false: a weight that was not resident is freed again afterwards (a pass over every layer's
  // weights that must not fill the device, as layerwise calibration's staged export does).
  std::optional<std::vector<float>> WeightAmax(int module, const QuantSpec& spec, std::string_view what,
                                               int64_t chunk_rows = 4096, bool keep_resident = true);
  // Export encoding of Linear `module`'s weight by the backend (PackNvfp4 / EncodeFp8 and their error sums
  // on its copy of the weight, `chunk_rows` rows of f32 scratch at a time; only the packed bytes come back):
  // PackWeight's bytes exactly. A weight that is not resident is uploaded for the call and freed after.
  // nullopt when the backend cannot do it exactly, and the caller encodes the host weight: formats other
  // than nvfp4 (dynamic path, global amax given), fp8 and fp8_pc (amax given), a backend copy that is not
  // exactly the Model's weight, and non-finite weights (the host names them).
  // `ops` (not null): the encoding's ops run on that backend, a Fork of this one's driven from another
  // thread while this one computes (the whole-model export during the calibration forward). The weight
  // must then be resident with its upload finished (nullopt otherwise: the host encodes it), and the
  // caller keeps it resident and unchanged until the call returns; this ForwardModel is only read.
  std::optional<EncodedWeight> EncodeWeight(int module, PackFormat format, const PackInputs& inputs,
                                            std::string_view what, int64_t chunk_rows = 4096,
                                            Backend* ops = nullptr);
  // mse's FP8 scale sweep of Linear `module`'s weight by the backend (Backend::Nvfp4SweepBlocks on its copy,
  // `chunk_rows` rows of f32 scratch at a time; only the chosen indices come back): per 16-element row block
  // the index into `scales`, exactly numerics Nvfp4SweepRowBlocks' choice on the Model's weight. A weight that
  // is not resident is uploaded for the call and freed after. nullopt when the backend has no such op or its
  // copy is not exactly the Model's weight: the caller sweeps the host weight.
  std::optional<std::vector<int32_t>> SweepNvfp4Weight(int module, std::span<const float> scales,
                                                       int64_t chunk_rows = 4096);
  // Frees the backend's embedding table / lm_head weight until the next Embed / head use uploads them again
  // (layerwise calibration between its first and last step).
  void ReleaseEmbedding();
  void ReleaseHead();

  // --- forward ---
  // Token embeddings of ids [batch, seq] (row-major, host). Ids outside [0, vocab) throw naming the position.
  HiddenStates Embed(std::span<const int32_t> ids, int64_t batch, int64_t seq);
  // Runs decoder layer `layer` on `h` in place (loading the layer first if needed).
  void RunLayer(int layer, HiddenStates& h, ForwardHooks* hooks = nullptr);
  // Final norm + lm_head: logits [batch*seq, vocab] f32, on the host.
  Tensor Logits(const HiddenStates& h, ForwardHooks* hooks = nullptr);
  // Final norm + lm_head + cross entropy without materializing all logits: nll[r] = −log p(targets[r] | row r)
  // for the batch*seq rows of h; targets [batch*seq] (host). nll (host) has batch*seq entries.
  void TokenNll(const HiddenStates& h, std::span<const int32_t> targets, std::span<double> nll,
                ForwardHooks* hooks = nullptr);
  // Embed + every layer + Logits.
  Tensor Forward(std::span<const int32_t> ids, int64_t batch, int64_t seq, ForwardHooks* hooks = nullptr);

  // On a device backend, RunLayer runs attention on groups of whole sequences and a dense MLP on row ranges
  // of about `rows` rows (at least one sequence) when the hooks are nullptr or RowLocal(), so the
  // workspace scales with `rows` instead of the batch (layerwise calibration, whose memory budget is one
  // layer plus the activations). 0 (the default): whole batches. Ignored on the CPU, whose numerics stay
  // those of whole batches.
  void set_max_chunk_rows(int64_t rows) { max_chunk_rows_ = rows; }
  // On a device backend, with the same hooks, a dense MLP runs on row ranges of at most `rows` rows even
  // within one attention group (0, the default: the attention's group). The MLP's scratch per row is
  // larger than the attention's (Llama-3-8B: 2 x 14336 f32 against 12288), so attention on 2048 rows and the
  // MLP on 1024 need about the same scratch, which they share.
  void set_max_mlp_rows(int64_t rows) { max_mlp_rows_ = rows; }
  int64_t max_mlp_rows() const { return max_mlp_rows_; }
  // On a device backend, while the embedding table is not resident, Embed gathers each batch's rows from the
  // host table (as stored) and uploads only those, instead of uploading the table (layerwise calibration:
  // a 128k-vocabulary table is more than a decoder layer). The values are the same.
  void set_embed_rows_from_host(bool on) {
    embed_rows_from_host_ = on;
    if (!on) std::vector<char>().swap(embed_staging_);
  }
  int64_t max_chunk_rows() const { return max_chunk_rows_; }

  // Rows each Linear module has processed since the last reset (per-expert token counts for MoE).
  const std::vector<int64_t>& rows_seen() const { return rows_seen_; }
  void ResetRowsSeen();

 private:
  struct DeviceLayer;
  struct Workspace;
  WeightRef Weight(int module);
  // The backend holds module's current weight.
  bool IsResident(int module) const;
  // Frees module's backend weight when destroyed, if `on` (a weight uploaded for one call only).
  class EvictAfter {
   public:
    EvictAfter(ForwardModel& fm, int module, bool on) : fm_(fm), m_(module), on_(on) {}
    ~EvictAfter();
    EvictAfter(const EvictAfter&) = delete;
    EvictAfter& operator=(const EvictAfter&) = delete;

   private:
    ForwardModel& fm_;
    int m_;
    bool on_;
  };
  // Rows [r0, r0 + n) of a [*, cols] weight as f32 in `be`'s memory: the weight itself when it is f32, else
  // converted by `be` into `scratch` (allocated on first use for `max_rows` rows; `iota` holds 0..max_rows-1).
  static const float* RowsAsF32(Backend& be, const int32_t* iota, WeightRef w, int64_t r0, int64_t n, int64_t cols,
                                int64_t max_rows, Buffer& scratch);
  const float* RowsAsF32(WeightRef w, int64_t r0, int64_t n, int64_t cols, int64_t max_rows, Buffer& scratch) {
    return RowsAsF32(be_, w.dtype == DType::kF32 ? nullptr : Iota(max_rows), w, r0, n, cols, max_rows, scratch);
  }
  // Rows of f32 scratch per chunk for a weight of `cols` columns: `chunk_rows`, at most `rows`, and at most
  // 32 MiB (a layerwise budget has room for little beside two layers and the activations).
  static int64_t ChunkRows(int64_t chunk_rows, int64_t rows, int64_t cols);
  // int32 0, 1, ..., n-1 in backend memory (grown on demand).
  const int32_t* Iota(int64_t n);
  const float* Bias(int module) const;
  void UploadLinear(int module);
  // Frees module's backend weight (after its background upload, if one is pending).
  void DropWeight(int module);
  // Orders later ops after module's background upload, if pending, and drops its mmap pages.
  void FinishUpload(int module);
  void Linear(int module, const float* x, int64_t rows, float* y, bool accumulate, ForwardHooks* hooks);
  // Linears `modules` on one input x, outputs ys[i] (not accumulated): one GemmShared when the hooks only
  // read activations, else Linear per module (each gets its own copy of x to change).
  void SharedLinears(std::span<const int> modules, const float* x, int64_t rows, std::span<float* const> ys,
                     ForwardHooks* hooks);
  void GatedMlp(const int ids[3], const float* x, int64_t rows, float* out, bool accumulate, ForwardHooks* hooks);
  // Attention block of `layer` on the B sequences of S tokens at hid [B*S, hidden], residual added in place.
  void Attention(int layer, float* hid, int64_t B, int64_t S, ForwardHooks* hooks);
  void MoeBlock(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks);
  // The MoE block with each token routed to its `top_k` best experts: h [rows, hidden] += its output.
  void MoeRouted(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks, int64_t top_k);
  void EnsureRope(int64_t seq);
  const float* FinalNormed(const HiddenStates& h);
  void EnsureHead();
  void UploadEmbedding();
  Buffer UploadHost(const Tensor& host);  // a host tensor as it is: adopted on the CPU, copied to a device
  Buffer UploadF32(const Tensor& host);   // a small f32 tensor (norms, biases)

  std::unique_ptr<Model> owned_;  // set by Load(); declared first so it is destroyed last
  Model& model_;
  Backend& be_;
  std::vector<std::unique_ptr<DeviceLayer>> layers_;
  // Per module (indexed like Model::modules()): backend weight / bias and the weight version uploaded.
  std::vector<Buffer> weights_, biases_;
  std::vector<int64_t> weight_versions_;
  std::vector<char> weight_exact_;  // the backend copy holds exactly the Model's values
  std::vector<int64_t> upload_ticket_;  // a pending background upload of the weight (PrefetchLayer), or 0
  Buffer iota_;                     // int32 0, 1, 2, ... (row indices for converting a weight with EmbedRows)
  int64_t iota_len_ = 0;
  int64_t resident_bytes_ = 0;
  std::vector<int64_t> rows_seen_;
  Buffer embed_table_;  // [vocab, hidden] as stored (F32 / F16 / BF16)
  DType embed_dtype_ = DType::kF32;
  Buffer final_norm_;   // [hidden] f32
  Buffer rope_cos_, rope_sin_;  // [rope_len_, head_dim/2]
  int64_t rope_len_ = 0;
  int64_t max_chunk_rows_ = 0;
  int64_t max_mlp_rows_ = 0;
  bool embed_rows_from_host_ = false;
  std::vector<char> embed_staging_;  // host rows of set_embed_rows_from_host, reused across batches
  std::unique_ptr<Workspace> ws_;
};

}  // namespace qforge
