#!/usr/bin/env python3
"""Writes reference checkpoints exported by NVIDIA ModelOpt itself, for `qforge check` to validate.

The issue's rule is that every qforge export passes `qforge check`, and so must checkpoints written by
ModelOpt. This script quantizes the tiny random models in ../shared/data/models/tiny with ModelOpt on the
CPU (max calibration on a few random token batches), exports them with `export_hf_checkpoint`, and writes
each to tests/golden/modelopt_export/<case>/ with a GENERATED_BY.txt naming the torch, transformers and
ModelOpt versions and the seed. The checkpoints are small (bf16 export of ~100k-parameter models).

Usage:
  tools/make_modelopt_reference.py [--out DIR] [--models DIR] [--venv DIR] [--cases a,b,...]

If torch, transformers or modelopt cannot be imported, a virtual environment is created under --venv
(default /tmp/qforge-modelopt-venv), `pip install torch transformers nvidia-modelopt safetensors accelerate requests`
runs there, and the script re-executes itself inside it. PyPI's torch wheel is the CUDA build; it runs on the
CPU when no GPU is present.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "golden", "modelopt_export")
DEFAULT_MODELS = os.path.join(os.path.dirname(REPO), "shared", "data", "models", "tiny")
PACKAGES = ["torch", "transformers", "nvidia-modelopt", "safetensors", "accelerate", "requests"]
SEED = 1234

# case name -> (tiny model folder, model preset, kv preset or None)
CASES = {
    "qwen2_fp8_kv_fp8": ("qwen2", "FP8_DEFAULT_CFG", "FP8_KV_CFG"),
    "qwen2_nvfp4_kv_fp8": ("qwen2", "NVFP4_DEFAULT_CFG", "FP8_KV_CFG"),
    "qwen2_w4a16_nvfp4": ("qwen2", "W4A16_NVFP4_CFG", None),
    "qwen2_fp8_qkvo_nvfp4_mlp": ("qwen2", "MIXED_FP8_QKVO_NVFP4_MLP", "FP8_KV_CFG"),
    "qwen3_moe_nvfp4_kv_fp8": ("qwen3_moe", "NVFP4_DEFAULT_CFG", "FP8_KV_CFG"),
    "mixtral_fp8_kv_fp8": ("mixtral", "FP8_DEFAULT_CFG", "FP8_KV_CFG"),
    "mixtral_nvfp4_kv_fp8": ("mixtral", "NVFP4_DEFAULT_CFG", "FP8_KV_CFG"),
}


def ensure_environment(venv):
    """Returns normally if the packages import; otherwise installs them into `venv` and re-executes."""
    try:
        import modelopt  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("QF_MODELOPT_REEXEC"):
        sys.exit("torch / transformers / modelopt still not importable inside " + venv)
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    subprocess.check_call([python, "-m", "pip", "install", "--progress-bar", "off", *PACKAGES])
    env = dict(os.environ, QF_MODELOPT_REEXEC="1")
    os.execve(python, [python, os.path.abspath(__file__), *sys.argv[1:]], env)


def quant_config(preset, kv_preset):
    import modelopt.torch.quantization as mtq
    from modelopt.torch.quantization.utils.core_utils import update_quant_cfg_with_kv_cache_quant

    if preset == "MIXED_FP8_QKVO_NVFP4_MLP":
        # FP8 W8A8 on attention projections, NVFP4 W4A4 on the MLP (spec §10.6). Later entries win.
        fp8 = mtq.FP8_DEFAULT_CFG["quant_cfg"]
        nvfp4 = mtq.NVFP4_DEFAULT_CFG["quant_cfg"]
        w_fp8 = next(e for e in fp8 if e.get("quantizer_name") == "*weight_quantizer")
        i_fp8 = next(e for e in fp8 if e.get("quantizer_name") == "*input_quantizer")
        w_nv = next(e for e in nvfp4 if e.get("quantizer_name") == "*weight_quantizer")
        i_nv = next(e for e in nvfp4 if e.get("quantizer_name") == "*input_quantizer")
        entries = [e for e in fp8 if e.get("quantizer_name") not in ("*weight_quantizer", "*input_quantizer")]
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            entries.append(dict(w_fp8, quantizer_name=f"*{proj}*weight_quantizer"))
            entries.append(dict(i_fp8, quantizer_name=f"*{proj}*input_quantizer"))
        entries.append(dict(w_nv, quantizer_name="*mlp*weight_quantizer"))
        entries.append(dict(i_nv, quantizer_name="*mlp*input_quantizer"))
        cfg = {"quant_cfg": entries, "algorithm": "max"}
    else:
        cfg = getattr(mtq, preset)
    if kv_preset:
        cfg = update_quant_cfg_with_kv_cache_quant(cfg, getattr(mtq, kv_preset)["quant_cfg"])
    return cfg


def make_case(name, model_dir, preset, kv_preset, out_root):
    import modelopt
    import modelopt.torch.quantization as mtq
    import torch
    import transformers
    from modelopt.torch.export import export_hf_checkpoint

    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    batches = [torch.randint(0, vocab, (2, 32)) for _ in range(4)]

    def forward_loop(m):
        with torch.no_grad():
            for b in batches:
                m(input_ids=b)

    model = mtq.quantize(model, quant_config(preset, kv_preset), forward_loop)
    out = os.path.join(out_root, name)
    with tempfile.TemporaryDirectory() as tmp:
        export_hf_checkpoint(model, dtype=torch.bfloat16, export_dir=tmp)
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    with open(os.path.join(out, "GENERATED_BY.txt"), "w") as f:
        f.write(
            f"Exported by tools/make_modelopt_reference.py (case {name}).\n"
            f"model: shared/data/models/tiny/{os.path.basename(model_dir)}; preset: {preset}; kv: {kv_preset}\n"
            f"calibration: max, 4 batches of 2x32 random token ids, torch.manual_seed({SEED}); device: cpu\n"
            f"torch {torch.__version__}; transformers {transformers.__version__}; "
            f"nvidia-modelopt {modelopt.__version__}; python {sys.version.split()[0]}\n"
        )
    with open(os.path.join(out, "hf_quant_config.json")) as f:
        algo = json.load(f)["quantization"]["quant_algo"]
    size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
    print(f"{name}: quant_algo {algo}, {size} bytes in {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--venv", default="/tmp/qforge-modelopt-venv")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    ensure_environment(args.venv)
    os.makedirs(args.out, exist_ok=True)
    failed = []
    for name in args.cases.split(","):
        folder, preset, kv = CASES[name]
        try:
            make_case(name, os.path.join(args.models, folder), preset, kv, args.out)
        except Exception as e:  # report every case, then fail
            failed.append(name)
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    if failed:
        sys.exit("failed cases: " + ", ".join(failed))


if __name__ == "__main__":
    main()
