#!/usr/bin/env python3
"""Builds bench/gpu_e2e.sh's table from its work folder: every phase of qforge (whole model, --layerwise),
ModelOpt (whole model, layerwise + CPU offload) and PyTorch's plain forward, and issue 10's ratios.

Reads WORK/logs/qf_{whole,layerwise}.log (qforge quantize's summary) and .meta (wall time, exit status),
WORK/mo_{whole,layerwise}.json (bench/gpu/modelopt_ptq.py), WORK/torch.json (bench/gpu/torch_floor.py),
WORK/mem_*.csv (nvidia-smi memory.used samples during each run) and WORK/bench.env (the shapes).
"""

import argparse
import json
import os
import re

GIB = 2**30


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def load_json(path):
    s = read(path)
    return json.loads(s) if s else None


def kv_file(path):
    d = {}
    for line in (read(path) or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            d[k.strip()] = v.strip()
    return d


def parse_qforge(log):
    """qforge quantize's summary: the `time:` phases, peak RSS, calibration counts, and lines about the GPU."""
    if log is None:
        return None
    r = {"phases": {}, "gpu_lines": [], "tail": log.strip().splitlines()[-15:]}
    for line in log.splitlines():
        if line.startswith("time:"):
            for part in line[len("time:"):].split(","):
                m = re.match(r"\s*(.+?)\s+([0-9.]+)\s*(ms|s)\s*$", part)
                if m:
                    v = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
                    r["phases"][m.group(1)] = v
        elif line.startswith("peak RSS"):
            r["peak_rss"] = line.split(":", 1)[1].strip()
        elif line.startswith("calibration:"):
            r["calibration"] = line.split(":", 1)[1].strip()
        elif line.startswith("layerwise:"):
            r["layerwise"] = line.split(":", 1)[1].strip()
        m = re.match(r"device \S+ \(.*\): peak memory ([0-9.]+) MiB", line)
        if m:
            r["own_peak_mib"] = float(m.group(1))
        if re.search(r"\b(gpu|GPU|cuda|CUDA|device|h2d|d2h|host.?to.?device|gemm|GEMM|TFLOP)", line) and \
                not line.startswith("time:"):
            r["gpu_lines"].append(line.strip())
    return r


def mem_peak(path, idle):
    """Peak memory.used (MiB) of nvidia-smi samples, and the peak above the idle reading before the runs."""
    s = read(path)
    if not s:
        return None
    vals = []
    for line in s.splitlines():
        f = line.replace(",", " ").split()
        if f and re.fullmatch(r"[0-9]+", f[-1]):
            vals.append(int(f[-1]))
    if not vals:
        return None
    return {"peak": max(vals), "above_idle": max(vals) - idle, "samples": len(vals)}


def fmt_s(v):
    return "" if v is None else f"{v:.2f} s"


def fmt_mib(v):
    return "" if v is None else f"{v / 1024:.2f} GiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    w = a.work
    env = kv_file(os.path.join(w, "bench.env"))
    idle = int(env.get("IDLE_MIB", "0") or 0)
    H, L, I = int(env["HIDDEN"]), int(env["LAYERS"]), int(env["INTER"])
    NH, KV, V = int(env["HEADS"]), int(env["KV_HEADS"]), int(env["VOCAB"])
    N, S, B = int(env["SAMPLES"]), int(env["SEQ"]), int(env["BATCH"])
    hd = H // NH

    qf, qmeta, qmem = {}, {}, {}
    for k in ("whole", "layerwise"):
        qf[k] = parse_qforge(read(os.path.join(w, "logs", f"qf_{k}.log")))
        qmeta[k] = kv_file(os.path.join(w, "logs", f"qf_{k}.meta"))
        qmem[k] = mem_peak(os.path.join(w, f"mem_qf_{k}.csv"), idle)
    mo = {k: load_json(os.path.join(w, f"mo_{k}.json")) for k in ("whole", "layerwise")}
    mmeta = {k: kv_file(os.path.join(w, "logs", f"mo_{k}.meta")) for k in ("whole", "layerwise")}
    mmem = {k: mem_peak(os.path.join(w, f"mem_mo_{k}.csv"), idle) for k in ("whole", "layerwise")}
    th = load_json(os.path.join(w, "torch.json"))
    tmem = mem_peak(os.path.join(w, "mem_torch.csv"), idle)

    def qph(k, *names):
        q = qf.get(k)
        if not q or not q["phases"]:
            return None
        vals = [q["phases"].get(n) for n in names]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def qexport(k):  # the `export` phase (wall); older summaries: packing + write
        q = qf.get(k)
        if q and "export" in q["phases"]:
            return q["phases"]["export"]
        return qph(k, "packing", "write")

    def mph(k, name):
        m = mo.get(k)
        return None if not m else m["seconds"].get(name)

    def qwall(k):
        v = qmeta[k].get("wall_s")
        return float(v) if v else None

    out = []
    out.append("# bench/gpu_e2e.sh: qforge vs ModelOpt vs PyTorch on one GPU\n")
    shape = "Llama-3-8B shape" if (H, L, I, NH, KV, V) == (4096, 32, 14336, 32, 8, 128256) else "Llama shape"
    out.append(f"- model: {shape} (hidden {H}, {L} layers, intermediate {I}, {NH} heads / {KV} KV heads, "
               f"vocab {V}), random bf16 weights, generated by {env.get('GEN', '?')}; "
               f"{env.get('MODEL_BYTES', '?')} bytes on disk")
    out.append(f"- job: recipe {env.get('RECIPE')} (NVFP4 W4A4 + FP8 KV cache, max calibration), {N} samples x {S} "
               f"tokens, batch {B}, export; the same token ids for all tools ({env.get('IDS_SOURCE', '?')})")
    out.append(f"- machine: {env.get('GPU', '?')}; {env.get('HOST', '')}")
    out.append(f"- software: qforge `{env.get('QF_VERSION', 'n/a')}` ({env.get('QF', '')} {env.get('QF_DEVICE_FLAG', '')}); "
               f"{env.get('PY_VERSIONS', '')}")
    out.append(f"- idle GPU memory before the runs: {idle} MiB; peak GPU memory below is nvidia-smi memory.used "
               f"above that (CUDA context included), sampled every 100 ms")
    out.append("- end to end = load + calibration + export written, as qforge's `total` and as issue 10 counts "
               "ModelOpt (load + mtq.quantize + export_hf_checkpoint); Python's imports and ModelOpt's one-time "
               "warm-up (nvcc build of its FP8 fake-quant extension, Triton JIT) are shown apart and not counted\n")

    cols = ["qforge whole", "qforge --layerwise", "ModelOpt whole", f"ModelOpt layerwise + offload "
            f"(GPU {env.get('GPU_CAP_GIB', '?')} GiB)", "PyTorch bf16"]
    rows = []

    def row(name, vals):
        rows.append("| " + name + " | " + " | ".join(v if v else "" for v in vals) + " |")

    row("process start / import", [None, None, fmt_s(mph("whole", "import")), fmt_s(mph("layerwise", "import")),
                                   fmt_s(th["seconds"].get("import")) if th else None])
    row("one-time warm-up, not counted (FP8 CUDA extension build / 1-layer mtq.quantize)",
        [None, None] + [" / ".join(fmt_s(mph(k, n)) or "-" for n in ("warmup.cuda_ext_fp8", "warmup.quantize_1_layer"))
                        if mo.get(k) and mph(k, "warmup.cuda_ext_fp8") is not None else None
                        for k in ("whole", "layerwise")] + [fmt_s(th["seconds"].get("warmup")) if th else None])
    row("load", [fmt_s(qph("whole", "load")), fmt_s(qph("layerwise", "load")), fmt_s(mph("whole", "load")),
                 fmt_s(mph("layerwise", "load")), fmt_s(th["seconds"].get("load")) if th else None])
    row("tokenize", [fmt_s(qph("whole", "tokenize")), fmt_s(qph("layerwise", "tokenize")), None, None, None])
    row("weight amax", [fmt_s(qph("whole", "weight amax")), fmt_s(qph("layerwise", "weight amax")), None, None, None])
    row("calibration forward (hooks included)",
        [fmt_s(qph("whole", "calibration forward")), fmt_s(qph("layerwise", "calibration forward")),
         fmt_s(mph("whole", "quantize.forward_loop")), fmt_s(mph("layerwise", "quantize.forward_loop")), None])
    row("amax reduction", [fmt_s(qph("whole", "amax reduction")), fmt_s(qph("layerwise", "amax reduction")),
                           None, None, None])
    row("quantize, whole call (mtq.quantize)", [None, None, fmt_s(mph("whole", "quantize")),
                                                fmt_s(mph("layerwise", "quantize")), None])
    row("plain forward, decoder only (no lm_head)", [None, None, None, None,
                                                     fmt_s(th["seconds"].get("forward_decoder")) if th else None])
    row("plain forward, full logits", [None, None, None, None,
                                       fmt_s(th["seconds"].get("forward_full")) if th else None])
    row("encode (weights packed, error measured)", [fmt_s(qph("whole", "encode")), fmt_s(qph("layerwise", "encode")),
                                                    None, None, None])
    row("write threads (busy time, overlaps encode)", [fmt_s(qph("whole", "write threads")),
                                                       fmt_s(qph("layerwise", "write threads")), None, None, None])
    row("export (wall / export_hf_checkpoint)",
        [fmt_s(qexport("whole")), fmt_s(qexport("layerwise")),
         fmt_s(mph("whole", "export")), fmt_s(mph("layerwise", "export")), None])
    row("**end to end** (load -> export written)",
        [fmt_s(qph("whole", "total")), fmt_s(qph("layerwise", "total")), fmt_s(mph("whole", "e2e")),
         fmt_s(mph("layerwise", "e2e")), None])
    row("process wall time", [fmt_s(qwall("whole")), fmt_s(qwall("layerwise")), fmt_s(mph("whole", "process")),
                              fmt_s(mph("layerwise", "process")), None])
    row("peak GPU memory (nvidia-smi)", [fmt_mib(qmem[k]["above_idle"]) if qmem[k] else None for k in ("whole", "layerwise")]
        + [fmt_mib(mmem[k]["above_idle"]) if mmem[k] else None for k in ("whole", "layerwise")]
        + [fmt_mib(tmem["above_idle"]) if tmem else None])

    def torch_peak(m):
        if not m or not m.get("peak_reserved_mib"):
            return None
        return fmt_mib(max(m["peak_reserved_mib"].values()))

    row("peak CUDA memory reserved by torch", [None, None, torch_peak(mo["whole"]), torch_peak(mo["layerwise"]),
                                               torch_peak(th)])
    row("peak host RSS", [qf[k].get("peak_rss") if qf[k] else None for k in ("whole", "layerwise")] + [None] * 3)

    def export_size(k_meta, m):
        b = k_meta.get("export_bytes") if k_meta else None
        if b is None and m:
            b = m["notes"].get("export_bytes")
        return f"{int(b) / GIB:.2f} GiB" if b else None

    row("export size", [export_size(qmeta["whole"], None), export_size(qmeta["layerwise"], None),
                        export_size(None, mo["whole"]), export_size(None, mo["layerwise"]), None])
    row("exit status", [qmeta["whole"].get("rc"), qmeta["layerwise"].get("rc"), mmeta["whole"].get("rc"),
                        mmeta["layerwise"].get("rc"), kv_file(os.path.join(w, "logs", "torch.meta")).get("rc")])
    row("`qforge check` of the export", [qmeta["whole"].get("check"), qmeta["layerwise"].get("check"),
                                         mmeta["whole"].get("check"), mmeta["layerwise"].get("check"), None])
    out.append("| phase | " + " | ".join(cols) + " |")
    out.append("|" + "---|" * (len(cols) + 1))
    out.extend(rows)

    # Issue 10's targets.
    out.append("\n## Ratios (issue 10's targets)\n")
    out.append("| ratio | value | target | met |")
    out.append("|---|---|---|---|")

    def ratio(name, num, den, target, le=True, note=""):
        tgt = "-" if target is None else f"{'<=' if le else '>='} {target}"
        if num is None or den is None or den == 0:
            extra = "" if target is None else note
            out.append(f"| {name} | n/a | {tgt} | not measured{extra} |")
            return
        r = num / den
        if target is None:
            out.append(f"| {name} | {r:.3f} ({num:.2f} / {den:.2f}) | - | {note.strip(' ()')} |")
            return
        ok = r <= target if le else r >= target
        out.append(f"| {name} | {r:.3f} ({num:.2f} / {den:.2f}) | {tgt} | "
                   f"{'yes' if ok else '**no**'}{note} |")

    ratio("qforge end to end / ModelOpt end to end (whole model)", qph("whole", "total"), mph("whole", "e2e"), 0.4)
    tf = th["seconds"] if th else {}
    ratio("qforge calibration forward / PyTorch plain forward (decoder only)",
          qph("whole", "calibration forward"), tf.get("forward_decoder"), 1.0)
    ratio("qforge calibration forward / PyTorch plain forward (full logits)",
          qph("whole", "calibration forward"), tf.get("forward_full"), None, note="for reference")
    ratio("qforge export / ModelOpt export (qforge: after calibration)", qexport("whole"), mph("whole", "export"),
          0.3, note=" (staged: the weights are encoded before the forward and written during it)")
    enc = qph("whole", "encode")
    ratio("qforge export work on the critical path (encode + export after calibration) / ModelOpt export",
          None if enc is None or qexport("whole") is None else enc + qexport("whole"), mph("whole", "export"), None,
          note="for reference: what the export adds to end to end")
    ratio("qforge --layerwise / qforge whole (end to end)", qph("layerwise", "total"), qph("whole", "total"), 1.2)

    layer_params = 2 * H * NH * hd + 2 * H * KV * hd + 3 * H * I + 2 * H
    two_layers = 2 * layer_params * 2  # bf16
    act = N * S * H * 2  # one set of captured bf16 hidden states
    budget = 1.1 * (two_layers + act)
    lw_peak = qmem["layerwise"]["above_idle"] * 2**20 if qmem["layerwise"] else None
    ratio("qforge --layerwise peak GPU memory / (2 layers' weights + activations) x 1.1",
          None if lw_peak is None else lw_peak / GIB, budget / GIB, 1.0,
          note=f" (2 layers bf16 {two_layers / GIB:.2f} GiB + one activation set {N}x{S}x{H} bf16 {act / GIB:.2f} GiB;"
               f" two sets: {1.1 * (two_layers + 2 * act) / GIB:.2f} GiB)")
    own = qf["layerwise"].get("own_peak_mib") if qf["layerwise"] else None
    ratio("qforge --layerwise peak of qforge's own device allocations / (2 layers' weights + activations) x 1.1",
          None if own is None else own * 2**20 / GIB, budget / GIB, 1.0,
          note=" (nvidia-smi's figure above adds the CUDA context, cuBLAS's workspace and the allocator's cache)")
    if th and qph("whole", "calibration forward"):
        qf_rate = th["decoder_gemm_flop"] / qph("whole", "calibration forward") / 1e12
        ratio("qforge decoder GEMM rate, lower bound (GEMM FLOPs / whole calibration forward) / cuBLAS rate",
              qf_rate, th["layer_gemm_tflops"], 0.7, le=False,
              note=" (a lower bound: the forward's time also holds attention, norms, hooks)")
    else:
        out.append("| qforge GEMM rate / cuBLAS rate | n/a | >= 0.7 | not measured |")
    if mo["whole"] and th:
        ratio("ModelOpt calibration forward / PyTorch plain forward (full logits)",
              mph("whole", "quantize.forward_loop"), tf.get("forward_full"), None, note="for reference")
        ratio("ModelOpt layerwise + offload / ModelOpt whole (end to end)", mph("layerwise", "e2e"),
              mph("whole", "e2e"), None, note="for reference")

    if th:
        out.append("\n## cuBLAS bf16 GEMMs at the model's shapes (torch.matmul, M = batch x seq = "
                   f"{th['m_rows']})\n")
        out.append("| GEMM | N | K | time | TFLOP/s |")
        out.append("|---|---|---|---|---|")
        for k, g in th["gemm"].items():
            out.append(f"| {k} | {g['N']} | {g['K']} | {g['seconds'] * 1e3:.3f} ms | {g['tflops']:.1f} |")
        out.append(f"\nOne decoder layer's 7 GEMMs: {th['layer_gemm_seconds'] * 1e3:.2f} ms at "
                   f"{th['layer_gemm_tflops']:.1f} TFLOP/s; the decoder GEMMs of one calibration forward "
                   f"({th['decoder_gemm_flop'] / 1e15:.2f} PFLOP) take {th['decoder_gemm_floor_seconds']:.2f} s at "
                   "that rate.")

    notes = []
    for k in ("whole", "layerwise"):
        q = qf[k]
        if q and (q["gpu_lines"] or q.get("calibration") or q.get("layerwise")):
            notes.append(f"qforge {k}: " + "; ".join(x for x in [q.get("calibration"), q.get("layerwise")] if x))
            notes.extend(f"    {x}" for x in q["gpu_lines"][:20])
        if qmeta[k].get("rc") not in (None, "0"):
            notes.append(f"qforge {k} failed (exit {qmeta[k].get('rc')}); the log's end:")
            notes.extend(f"    {x}" for x in (q["tail"] if q else []))
    for k in ("whole", "layerwise"):
        m = mo[k]
        if m:
            notes.append(f"ModelOpt {k}: algorithm {m['notes'].get('algorithm')}; forward-loop calls "
                         f"{m['notes'].get('forward_loop_calls')}; device map {m['notes'].get('device_map', 'one GPU')}; FP8 CUDA "
                         f"extension built: {m['notes'].get('cuda_ext_fp8', 'n/a')}; {m.get('versions')}")
        elif mmeta[k].get("rc") not in (None, "0"):
            notes.append(f"ModelOpt {k} failed (exit {mmeta[k].get('rc')}): see logs/mo_{k}.log")
    if env.get("SKIPPED"):
        notes.append("skipped: " + env["SKIPPED"])
    if notes:
        out.append("\n## Notes\n")
        out.extend("    " + n if not n.startswith("    ") else n for n in notes)
    text = "\n".join(out) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
