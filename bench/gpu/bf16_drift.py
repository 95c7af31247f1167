"""How far bf16 numerics alone move max-calibrated input scales, in PyTorch itself.

Runs a HF model's calibration forward (transformers, plain torch, no quantization) twice on the GPU, in fp32
and in bf16, over the same token ids, records max |x| of every nn.Linear's input (experts see only the tokens
routed to them, as in calibration), and prints the Linears whose amax moves most between the two, relative to
fp32. tests/gpu/gpu_vs_cpu_e2e.sh holds qforge's CUDA bf16 exports to 1% of its fp32 CPU export in these same
amax values (the input scales are amax / 448 or amax / (6 * 448)); this is the same statistic for PyTorch.

Usage: bf16_drift.py MODEL_DIR IDS SAMPLES SEQ [BATCH] [TOP]
  IDS: qforge tokenize's output (whitespace-separated ids) or a .npy; samples are cut as qforge cuts them.
"""

import sys

import torch

from _util import batches, load_ids


def input_amax(model_dir, ids, batch, dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to("cuda").eval()
    amax = {}

    def hook(name):
        def pre(_module, args):
            x = args[0]
            if x.numel() == 0:
                return
            m = x.detach().abs().amax().float().item()
            amax[name] = max(amax.get(name, 0.0), m)

        return pre

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head"):
            mod.register_forward_pre_hook(hook(name))
    with torch.no_grad():
        for b in batches(ids, batch, "cuda"):
            model(input_ids=b, use_cache=False)
    del model
    torch.cuda.empty_cache()
    return amax


def main():
    model_dir, ids_path, samples, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    top = int(sys.argv[6]) if len(sys.argv) > 6 else 12
    ids = load_ids(ids_path, samples, seq)
    f32 = input_amax(model_dir, ids, batch, torch.float32)
    b16 = input_amax(model_dir, ids, batch, torch.bfloat16)
    rows = sorted(((abs(b16[n] - f32[n]) / f32[n], n) for n in f32 if n in b16 and f32[n] > 0), reverse=True)
    over = sum(1 for r, _ in rows if r > 0.01)
    print(f"{model_dir}: {len(rows)} Linear inputs, {samples} x {seq} tokens; bf16 vs fp32 input amax: "
          f"{over} differ by more than 1%, max {rows[0][0]:.4f}")
    for r, n in rows[:top]:
        print(f"  {r:.4f}  {n}  fp32 {f32[n]:.6g}  bf16 {b16[n]:.6g}")


if __name__ == "__main__":
    main()
