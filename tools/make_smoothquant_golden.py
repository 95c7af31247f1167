#!/usr/bin/env python3
"""ModelOpt's own SmoothQuant results on llama-dense-26M, for qforge's golden test (issue 11).

Runs `mtq.quantize(model, INT8_SMOOTHQUANT_CFG)` (alpha 1, ModelOpt's default, and alpha 0.5) on the bf16
model as hf_ptq.py loads it, calibrating on fixed token ids (the ones qforge's calib tests use:
tests/support/calib_algorithm_util.h FixedSamples, 4 x 32 ids in batches of 2), then ModelOpt's export-time
fusion preprocessing (`requantize_resmooth_fused_llm_layers`: one pre_quant_scale per group of Linears that
read one input, weights re-smoothed). For every smoothed Linear it writes

  <module>.act_amax                  f32 [in]   the per-channel input amax smoothquant started from
                                                (input_quantizer._amax_for_smoothing; the same for both alphas)
  <module>.a<alpha>.<stage>.pre_quant_scale   f32 [in]   (bf16 values)
  <module>.a<alpha>.<stage>.input_amax        f32 []
  <module>.a<alpha>.<stage>.weight_amax       f32 [out]
  stage: calib (after mtq.quantize), export (after the fusion preprocessing)

into tests/golden/smoothquant/llama-dense-26M.safetensors, and into its metadata the XXH3-128 (qforge's
Xxh3Hex) of each smoothed bf16 weight per alpha and stage, the versions and the calibration ids. qforge's
test feeds act_amax to its own SmoothQuant math (calib/smoothquant.h) and must reproduce everything bit for
bit: the comparison does not depend on the two forwards agreeing.

Runs where torch, transformers, nvidia-modelopt and xxhash import (the GPU machine: bring .whl/ and install
with pip --no-index --target, as bench/gpu_e2e.sh does). CPU or CUDA: only elementwise fp32 / bf16 math
follows the calibration forward.

Usage: tools/make_smoothquant_golden.py --model DIR --out FILE.safetensors [--device cuda]
"""

import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="llama-dense-26M directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()

    import copy

    import torch
    import transformers
    import xxhash
    from safetensors.torch import save_file

    import modelopt
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export.unified_export_hf import requantize_resmooth_fused_llm_layers
    from modelopt.torch.quantization.utils import is_quantized_linear

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # FixedSamples(): 4 samples of 32 ids, (i * 7919 + 13) % 500 + 10.
    ids = torch.tensor([(i * 7919 + 13) % 500 + 10 for i in range(4 * 32)], dtype=torch.long).view(4, 32)

    tensors = {}
    meta = {
        "generated_by": "tools/make_smoothquant_golden.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "modelopt": modelopt.__version__,
        "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
        "model": os.path.basename(os.path.normpath(a.model)),
        "model_dtype": "bfloat16",
        "calibration_ids": "FixedSamples: 4 x 32 ids (i * 7919 + 13) % 500 + 10, batches of 2",
        "weight_xxh3_128": {},
    }

    def bf16_hash(w):
        return xxhash.xxh3_128_hexdigest(w.detach().to(torch.bfloat16).contiguous().cpu().view(torch.int16).numpy().tobytes())

    for alpha in (1.0, 0.5):
        model = transformers.AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16)
        model = model.to(a.device).eval()
        cfg = copy.deepcopy(mtq.INT8_SMOOTHQUANT_CFG)
        cfg["algorithm"] = {"method": "smoothquant", "alpha": alpha}

        def loop(m):
            for b in range(0, ids.shape[0], 2):
                m(input_ids=ids[b : b + 2].to(a.device))

        with torch.no_grad():
            mtq.quantize(model, cfg, loop)
        tag = f"a{alpha:g}"
        smoothed = [
            (n, m)
            for n, m in model.named_modules()
            if is_quantized_linear(m) and hasattr(m.input_quantizer, "_amax_for_smoothing")
        ]

        def dump(stage):
            for n, m in smoothed:
                q = m.input_quantizer
                key = f"{n}.{tag}.{stage}"
                tensors[f"{key}.pre_quant_scale"] = q._pre_quant_scale.detach().float().flatten().cpu()
                tensors[f"{key}.input_amax"] = q._amax.detach().float().reshape([]).cpu()
                tensors[f"{key}.weight_amax"] = m.weight_quantizer._amax.detach().float().flatten().cpu()
                meta["weight_xxh3_128"][key] = bf16_hash(m.weight)

        for n, m in smoothed:
            tensors[f"{n}.act_amax"] = m.input_quantizer._amax_for_smoothing.detach().float().flatten().cpu()
        dump("calib")
        with torch.no_grad():
            requantize_resmooth_fused_llm_layers(model)
        dump("export")
        meta[f"smoothed_{tag}"] = len(smoothed)
        del model

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, a.out, metadata={"golden": json.dumps(meta)})
    print(f"wrote {a.out}: {len(tensors)} tensors, {meta['smoothed_a1']} smoothed Linears per alpha")


if __name__ == "__main__":
    main()
