#!/usr/bin/env python3
"""ModelOpt's own AWQ results on llama-dense-26M, for qforge's golden test (issue 11).

Runs `mtq.quantize` with INT4_AWQ_CFG (awq_lite, INT4 W4A16 blocks of 128) and NVFP4_AWQ_FULL_CFG (awq_full,
NVFP4 W4A4), each with `debug: true` so that the search statistics stay on the modules, on the model held in
bf16 (as hf_ptq.py loads it) and in fp32, calibrating on fixed token ids (qforge's calib tests' FixedSamples:
4 x 32 ids in batches of 2), then ModelOpt's export-time preprocessing (`requantize_resmooth_fused_llm_layers`:
o_proj / down_proj scales folded into v_proj / up_proj, one scale per group of Linears that read one input,
weights re-smoothed, the group's scale folded into the layernorm). For every AWQ Linear and run <tag>
(int4_awq.bf16, nvfp4_awq_full.bf16, int4_awq.f32, nvfp4_awq_full.f32) it writes

  <module>.<tag>.act_scale      f32 [in]   awq_lite's mean |x| (averaged over batches)
  <module>.<tag>.weight_scale   f32 [in]   awq_lite's weight salience
  <module>.<tag>.chan_amax      f32 [in]   the per-channel input amax (_amax_for_smoothing; W4A4 only)
  <module>.<tag>.lite_loss      f32 [alphas]  the search's summed output errors, alpha 0, 0.1, ..., 1
  <module>.<tag>.best_alpha     f32 []
  <module>.<tag>.best_scale     f32 [in]   the scale s of that alpha (the input gets 1 / s); torch's pow on the GPU
                                           may differ from glibc's by an ulp for alphas other than 0, 0.5 and 1
  <module>.<tag>.clip_w_amax    f32 []     awq_clip's amax before clipping (awq_full)
  <module>.<tag>.clip_loss      f32 [ratios]  awq_clip's per-tensor losses, ratio 0.5, 0.55, ..., 0.95, 1
  <module>.<tag>.<stage>.pre_quant_scale / .input_amax / .weight_amax
      stage calib: after mtq.quantize; stage export: after the preprocessing, the pre_quant_scale as it was
      just before ModelOpt folded it into the layernorm (qforge keeps it as a tensor), absent where ModelOpt
      folded it into v_proj / up_proj

into tests/golden/awq/llama-dense-26M.safetensors, and into its metadata the XXH3-128 (qforge's Xxh3Hex) of
each bf16 weight per run and stage, the modules whose scale was fused, the versions and the calibration ids.

Runs where torch, transformers, nvidia-modelopt and xxhash import, on a GPU (ModelOpt's NVFP4 fake quant is a
Triton kernel): bring .whl/ and install with pip --no-index --target, as bench/gpu_e2e.sh does.

Usage: tools/make_awq_golden.py --model DIR --out FILE.safetensors
"""

import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="llama-dense-26M directory")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import copy

    import torch
    import transformers
    import xxhash
    from safetensors.torch import save_file

    import modelopt
    import modelopt.torch.export.unified_export_hf as ue
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.utils import is_quantized_linear

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ids = torch.tensor([(i * 7919 + 13) % 500 + 10 for i in range(4 * 32)], dtype=torch.long).view(4, 32)

    tensors = {}
    meta = {
        "generated_by": "tools/make_awq_golden.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "modelopt": modelopt.__version__,
        "device": torch.cuda.get_device_name(0),
        "model": os.path.basename(os.path.normpath(a.model)),
        "calibration_ids": "FixedSamples: 4 x 32 ids (i * 7919 + 13) % 500 + 10, batches of 2",
        "weight_xxh3_128": {},
        "fused_with_prequant": {},
        "layernorm_xxh3_128": {},
    }

    def bf16_hash(w):
        return xxhash.xxh3_128_hexdigest(w.detach().to(torch.bfloat16).contiguous().cpu().view(torch.int16).numpy().tobytes())

    def f32(t):
        return t.detach().float().contiguous().cpu()

    # The pre_quant_scale of each group as ModelOpt folds it into the layernorm (qforge keeps it as a tensor).
    folded = {}
    original_fuse = ue.fuse_prequant_layernorm

    def recording_fuse(layernorm, modules):
        for m in modules:
            if hasattr(m.input_quantizer, "_pre_quant_scale"):
                folded[m.name] = f32(m.input_quantizer._pre_quant_scale).flatten()
        return original_fuse(layernorm, modules)

    ue.fuse_prequant_layernorm = recording_fuse

    runs = [("int4_awq", mtq.INT4_AWQ_CFG), ("nvfp4_awq_full", mtq.NVFP4_AWQ_FULL_CFG)]
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        for name, base in runs:
            tag = f"{name}.{dtype_name}"
            model = transformers.AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype).cuda().eval()
            cfg = copy.deepcopy(base)
            cfg["algorithm"] = dict(cfg["algorithm"]) if isinstance(cfg["algorithm"], dict) else {"method": cfg["algorithm"]}
            cfg["algorithm"]["debug"] = True

            def loop(m):
                for b in range(0, ids.shape[0], 2):
                    m(input_ids=ids[b : b + 2].cuda())

            with torch.no_grad():
                mtq.quantize(model, cfg, loop)
            linears = [(n, m) for n, m in model.named_modules() if is_quantized_linear(m) and hasattr(m, "awq_lite") or
                       is_quantized_linear(m) and hasattr(m, "awq_clip")]
            for n, m in linears:
                m.name = n
                key = f"{n}.{tag}"
                if hasattr(m, "awq_lite"):
                    h = m.awq_lite
                    tensors[f"{key}.act_scale"] = f32(h.act_scale).flatten()
                    tensors[f"{key}.weight_scale"] = f32(h.weight_scale).flatten()
                    tensors[f"{key}.lite_loss"] = torch.tensor([float(v) for v in h.loss.values()], dtype=torch.float32)
                    tensors[f"{key}.best_alpha"] = torch.tensor(float(h.best_alpha), dtype=torch.float32)
                    tensors[f"{key}.best_scale"] = f32(h.best_scale).flatten()
                if hasattr(m.input_quantizer, "_amax_for_smoothing"):
                    tensors[f"{key}.chan_amax"] = f32(m.input_quantizer._amax_for_smoothing).flatten()
                if hasattr(m, "awq_clip"):
                    c = m.awq_clip
                    tensors[f"{key}.clip_w_amax"] = f32(c.w_amax).reshape(-1)
                    tensors[f"{key}.clip_loss"] = torch.stack([f32(v).reshape(-1) for v in c.loss.values()])

            def dump(stage):
                for n, m in linears:
                    key = f"{n}.{tag}.{stage}"
                    q = m.input_quantizer
                    pqs = q._pre_quant_scale if hasattr(q, "_pre_quant_scale") else None
                    if stage == "export" and n in folded:
                        pqs = folded[n]
                    if pqs is not None:
                        tensors[f"{key}.pre_quant_scale"] = f32(pqs).flatten()
                    if q.is_enabled and q.amax is not None:
                        tensors[f"{key}.input_amax"] = f32(q.amax).reshape(-1)
                    tensors[f"{key}.weight_amax"] = f32(m.weight_quantizer.amax).reshape(-1)
                    if dtype == torch.bfloat16:
                        meta["weight_xxh3_128"][key] = bf16_hash(m.weight)
                    if stage == "export" and getattr(m, "fused_with_prequant", False) and n not in folded:
                        meta["fused_with_prequant"].setdefault(tag, []).append(n)

            dump("calib")
            folded.clear()
            with torch.no_grad():
                ue.requantize_resmooth_fused_llm_layers(model)
            dump("export")
            if dtype == torch.bfloat16:
                for n, m in model.named_modules():
                    if n.endswith("layernorm"):
                        meta["layernorm_xxh3_128"][f"{n}.{tag}"] = bf16_hash(m.weight)
            meta[f"linears_{tag}"] = len(linears)
            del model

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, a.out, metadata={"golden": json.dumps(meta)})
    print(f"wrote {a.out}: {len(tensors)} tensors; " + ", ".join(f"{k} {v}" for k, v in meta.items() if k.startswith("linears_")))


if __name__ == "__main__":
    main()
