#!/usr/bin/env python3
"""PyTorch's side of bench/gpu_e2e.sh: the compute floor that qforge's calibration forward is held to.

1. Plain bf16 forward of the HF LlamaForCausalLM (sdpa attention, use_cache off, inference mode) over the
   same token ids and batches as qforge, timed after one warm-up batch:
   - "decoder": the base model (embeddings, decoder layers, final norm), which is what qforge's
     calibration runs when lm_head does not calibrate (NVFP4 default: lm_head disabled);
   - "full": the causal-LM forward with logits at every position, as ModelOpt's calibration loop runs it.
2. cuBLAS-rate bf16 GEMMs (torch.matmul, x[M, K] @ W[N, K]^T, M = batch x seq) at every linear shape of the
   model, with CUDA events, and the GEMM-only time of one calibration forward (decoder layers, all batches)
   at those rates: the floor of the GEMM part, against which qforge's GEMM rate is judged.
Writes everything as JSON.
"""

import argparse
import os
import sys
import time

t_start = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _util  # noqa: E402


def gemm_bench(cfg, m_rows, dev, iters, warmup):
    import torch

    h, inter, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes = {  # name: (N, K, per layer count)
        "q_proj": (q, h, 1), "k_proj": (kv, h, 1), "v_proj": (kv, h, 1), "o_proj": (h, q, 1),
        "gate_proj": (inter, h, 1), "up_proj": (inter, h, 1), "down_proj": (h, inter, 1),
        "qkv_fused": (q + 2 * kv, h, 0), "gate_up_fused": (2 * inter, h, 0), "lm_head": (v, h, 0),
    }
    out = {}
    cuda = dev.startswith("cuda")
    for name, (n, k, count) in shapes.items():
        x = torch.randn(m_rows, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) / k**0.5
        for _ in range(warmup):
            torch.matmul(x, w.t())
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            s.record()
            for _ in range(iters):
                torch.matmul(x, w.t())
            e.record()
            torch.cuda.synchronize()
            sec = s.elapsed_time(e) / 1e3 / iters
        else:
            t = time.perf_counter()
            for _ in range(iters):
                torch.matmul(x, w.t())
            sec = (time.perf_counter() - t) / iters
        flop = 2.0 * m_rows * n * k
        out[name] = dict(M=m_rows, N=n, K=k, per_layer=count, seconds=sec, tflops=flop / sec / 1e12)
        del x, w
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--gemm-iters", type=int, default=20)
    ap.add_argument("--skip-full", action="store_true", help="skip the full-logits forward")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    import torch
    import transformers

    p = _util.Phases()
    p.seconds["import"] = time.perf_counter() - t_start
    print(_util.versions(), flush=True)
    dev = "cuda:0" if a.device == "cuda" else a.device
    ids = _util.load_ids(a.ids, a.samples, a.seq)
    if dev.startswith("cuda"):
        p.run("cuda_init", lambda: torch.zeros(1, device=dev))  # the CUDA context, outside the load
    model = p.run("load", lambda: transformers.AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.bfloat16, attn_implementation="sdpa", device_map=dev).eval())
    cfg = model.config
    data = _util.batches(ids, a.batch, dev)

    def run(fn):
        with torch.inference_mode():
            for b in data:
                fn(b)

    with torch.inference_mode():
        p.run("warmup", lambda: (model.model(input_ids=data[0], use_cache=False),
                                 None if a.skip_full else model(input_ids=data[0], use_cache=False)))
    p.run("forward_decoder", lambda: run(lambda b: model.model(input_ids=b, use_cache=False)))
    if not a.skip_full:
        p.run("forward_full", lambda: run(lambda b: model(input_ids=b, use_cache=False)))

    del model
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    m_rows = min(a.batch, a.samples) * a.seq
    g = p.run("gemm_bench", lambda: gemm_bench(cfg, m_rows, dev, a.gemm_iters, 3))
    layers = cfg.num_hidden_layers
    n_batches = len(data)
    layer_s = sum(v["seconds"] * v["per_layer"] for v in g.values())
    layer_flop = sum(2.0 * v["M"] * v["N"] * v["K"] * v["per_layer"] for v in g.values())
    # FLOPs of the decoder GEMMs of one calibration forward (all samples; the last batch may be smaller).
    tokens = a.samples * a.seq
    decoder_gemm_flop = layer_flop / m_rows * tokens * layers
    summary = dict(
        gemm=g,
        m_rows=m_rows,
        layer_gemm_seconds=layer_s,
        layer_gemm_tflops=layer_flop / layer_s / 1e12,
        decoder_gemm_flop=decoder_gemm_flop,
        decoder_gemm_floor_seconds=layer_s * layers * tokens / m_rows,
        n_batches=n_batches,
        layers=layers,
    )
    p.dump(a.json, versions=_util.versions(), batch=a.batch, samples=a.samples, seq=a.seq, **summary)


if __name__ == "__main__":
    main()
