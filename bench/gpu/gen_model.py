#!/usr/bin/env python3
"""A fast stand-in for `qforge synth-model` (bench/gpu_e2e.sh with QF_GEN=torch): the same checkpoint layout.

Writes what calib/synthetic_model.cc writes, field for field: config.json (LlamaForCausalLM, head_dim =
hidden / heads, max_position_embeddings 4096, rope_theta 1e4, untied lm_head, bf16), the same tensor names
in the same order, the same distributions (linear weights uniform in +-1/sqrt(in_features), embeddings
+-1, norms 1), shards of --shard-mb and model.safetensors.index.json. Only the random values differ (drawn
on the GPU by torch), which no timing depends on. It exists because synth-model draws 8B values on one
thread (about 190 s for the 8B shape on the GPU machine), a third of a 10-minute device call.
"""

import argparse
import json
import os
import shutil
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--shard-mb", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(a.seed)
    hd = a.hidden // a.heads
    assert a.hidden % a.heads == 0 and a.heads % a.kv_heads == 0
    tmp = a.out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "mlp_bias": False,
        "head_dim": hd, "hidden_act": "silu", "hidden_size": a.hidden, "intermediate_size": a.intermediate,
        "max_position_embeddings": 4096, "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": a.vocab, "bos_token_id": 0,
        "eos_token_id": 0,
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")

    params = 0

    def make(shape, bound):
        nonlocal params
        n = 1
        for s in shape:
            n *= s
        params += n
        if bound == 0:
            return torch.ones(shape, dtype=torch.bfloat16)
        t = torch.empty(shape, dtype=torch.float32, device=dev).uniform_(-bound, bound, generator=g)
        return t.to(torch.bfloat16).cpu()

    def lin(out, inp):
        return make((out, inp), 1.0 / inp**0.5)

    shard, shard_bytes, files, weight_map = {}, 0, [], {}
    limit = a.shard_mb << 20

    def flush():
        nonlocal shard, shard_bytes
        if not shard:
            return
        name = f"model-{len(files) + 1:05d}.safetensors"
        save_file(shard, os.path.join(tmp, name), metadata={"format": "pt"})
        for k in shard:
            weight_map[k] = name
        files.append(name)
        shard, shard_bytes = {}, 0

    def add(name, t):
        nonlocal shard_bytes
        shard[name] = t
        shard_bytes += t.numel() * t.element_size()
        if limit > 0 and shard_bytes >= limit:
            flush()

    add("model.embed_tokens.weight", make((a.vocab, a.hidden), 1.0))
    for l in range(a.layers):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", make((a.hidden,), 0))
        add(p + "post_attention_layernorm.weight", make((a.hidden,), 0))
        add(p + "self_attn.q_proj.weight", lin(a.heads * hd, a.hidden))
        add(p + "self_attn.k_proj.weight", lin(a.kv_heads * hd, a.hidden))
        add(p + "self_attn.v_proj.weight", lin(a.kv_heads * hd, a.hidden))
        add(p + "self_attn.o_proj.weight", lin(a.hidden, a.heads * hd))
        add(p + "mlp.gate_proj.weight", lin(a.intermediate, a.hidden))
        add(p + "mlp.up_proj.weight", lin(a.intermediate, a.hidden))
        add(p + "mlp.down_proj.weight", lin(a.hidden, a.intermediate))
    add("model.norm.weight", make((a.hidden,), 0))
    add("lm_head.weight", lin(a.vocab, a.hidden))
    flush()
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_parameters": params}, "weight_map": weight_map}, indent=2) + "\n")
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"wrote {a.out}: {params} parameters in {len(files)} shards, {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
