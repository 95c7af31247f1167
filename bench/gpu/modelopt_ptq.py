#!/usr/bin/env python3
"""ModelOpt's side of bench/gpu_e2e.sh: the same PTQ job as `qforge quantize`, through ModelOpt's public API.

Loads the HF checkpoint with transformers (bf16, sdpa attention), quantizes it with `mtq.quantize` under the
built-in recipe of the same name as qforge's (general/ptq/nvfp4_default-kv_fp8: NVFP4 W4A4 + FP8 KV cache,
max calibration), calibrating over the given token ids with ModelOpt's own forward loop
(`modelopt.torch.utils.create_forward_loop` over a list of {"input_ids": [batch, seq]} batches: use_cache off,
full logits, as hf_ptq.py runs it), and exports with `export_hf_checkpoint`. Times import, load, quantize (and
the forward loop inside it) and export separately and writes them, with peak CUDA memory per phase, as JSON.

Before the timed phases, a warm-up (timed apart, not counted): ModelOpt's FP8 fake-quant CUDA extension,
which it JIT-compiles with nvcc on first use (the FP8 KV-cache quantizers use it; a user pays this once, then
torch's extension cache holds it), and one mtq.quantize of a one-layer model of the same shapes (small vocab),
which compiles the Triton NVFP4 kernels and warms cuBLAS. Without it the first timed forward would hold a
minute or more of compilation that a user's second run does not pay.

--layerwise: layer-by-layer max calibration (`algorithm: {method: max, layerwise: {enable: true}}`, the
nested form of ModelOpt >= 0.45) with the model loaded through accelerate's device_map="auto" and max_memory
capping the GPU at --gpu-mem-gib (the rest offloaded to CPU memory), as hf_ptq.py's get_model does; the export
then takes ModelOpt's streaming path for offloaded models.
"""

import argparse
import copy
import gc
import os
import sys
import time

t_start = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TQDM_DISABLE", "1")

import _util  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help=".npy [samples, seq] or qforge tokenize output")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--recipe", default="general/ptq/nvfp4_default-kv_fp8")
    ap.add_argument("--export", required=True)
    ap.add_argument("--layerwise", action="store_true")
    ap.add_argument("--gpu-mem-gib", type=float, default=6.0, help="GPU cap with --layerwise (accelerate max_memory)")
    ap.add_argument("--cpu-mem-gib", type=float, default=110.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    p = _util.Phases()

    def imports():
        import torch  # noqa: F401
        import transformers  # noqa: F401

        import modelopt.torch.quantization  # noqa: F401
        from modelopt.torch.export import export_hf_checkpoint  # noqa: F401

    # The import of torch + transformers + modelopt (what a user's script pays before load).
    t0 = time.perf_counter()
    imports()
    p.seconds["import"] = time.perf_counter() - t0 + (t0 - t_start)
    import torch
    import transformers

    import modelopt.torch.quantization as mtq
    from modelopt.recipe import load_recipe
    from modelopt.torch.export import export_hf_checkpoint
    from modelopt.torch.utils import create_forward_loop

    print(_util.versions(), flush=True)
    ids = _util.load_ids(a.ids, a.samples, a.seq)
    dev = a.device if a.device != "cuda" else "cuda:0"

    def load():
        kw = dict(dtype=torch.bfloat16, attn_implementation="sdpa")
        if a.layerwise:
            if dev.startswith("cuda"):
                kw.update(device_map="auto", max_memory={0: int(a.gpu_mem_gib * 2**30), "cpu": int(a.cpu_mem_gib * 2**30)})
            else:
                kw.update(device_map="cpu")
        else:
            kw.update(device_map=dev)
        m = transformers.AutoModelForCausalLM.from_pretrained(a.model, **kw)
        m.eval()
        return m

    recipe = load_recipe(a.recipe)
    cfg = recipe.quantize.model_dump()
    if a.layerwise:
        algo = cfg.get("algorithm")
        method = algo.get("method", "max") if isinstance(algo, dict) else (algo or "max")
        cfg["algorithm"] = {"method": method, "layerwise": {"enable": True}}
    p.notes["algorithm"] = str(cfg.get("algorithm"))

    def warmup_ext():
        from modelopt.torch.quantization.extensions import get_cuda_ext_fp8

        p.notes["cuda_ext_fp8"] = get_cuda_ext_fp8() is not None

    def warmup_quantize():
        c = transformers.AutoConfig.from_pretrained(a.model)
        c.num_hidden_layers, c.vocab_size = 1, 1024
        with torch.device(dev):
            m = transformers.AutoModelForCausalLM.from_config(c, dtype=torch.bfloat16, attn_implementation="sdpa")
        m.eval()
        g = torch.Generator().manual_seed(0)
        wd = [{"input_ids": torch.randint(0, 1024, (min(a.batch, a.samples), a.seq), generator=g).to(dev)}
              for _ in range(2)]
        mtq.quantize(m, copy.deepcopy(cfg), forward_loop=create_forward_loop(dataloader=wd))
        del m, wd
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    if (dev.startswith("cuda") or os.environ.get("QF_BENCH_WARMUP_CPU")) and not a.no_warmup:
        p.run("warmup.cuda_ext_fp8", warmup_ext)
        p.run("warmup.quantize_1_layer", warmup_quantize)

    model = p.run("load", load)
    if getattr(model, "hf_device_map", None):
        where = {}
        for v in model.hf_device_map.values():
            where[str(v)] = where.get(str(v), 0) + 1
        p.notes["device_map"] = where
        print("device_map:", where, flush=True)

    data = [{"input_ids": b} for b in _util.batches(ids, a.batch, dev)]
    loop = create_forward_loop(dataloader=data)
    fwd = {"seconds": 0.0, "calls": 0}

    def timed_loop(m):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        loop(m)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        fwd["seconds"] += time.perf_counter() - t
        fwd["calls"] += 1

    model = p.run("quantize", lambda: mtq.quantize(model, copy.deepcopy(cfg), forward_loop=timed_loop))
    p.seconds["quantize.forward_loop"] = fwd["seconds"]
    p.notes["forward_loop_calls"] = fwd["calls"]
    if os.environ.get("QF_BENCH_PRINT_SUMMARY"):
        mtq.print_quant_summary(model)

    os.makedirs(a.export, exist_ok=True)
    p.run("export", lambda: export_hf_checkpoint(model, export_dir=a.export))
    p.seconds["e2e"] = p.seconds["load"] + p.seconds["quantize"] + p.seconds["export"]
    p.seconds["process"] = time.perf_counter() - t_start
    p.notes["export_bytes"] = _util.dir_bytes(a.export)
    p.notes["export_files"] = sorted(os.listdir(a.export))
    p.dump(a.json, versions=_util.versions(), layerwise=a.layerwise, batch=a.batch, samples=a.samples, seq=a.seq,
           gpu_mem_gib=a.gpu_mem_gib if a.layerwise else None, recipe=a.recipe)


if __name__ == "__main__":
    main()
