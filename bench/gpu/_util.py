"""Helpers shared by the peer/baseline side of bench/gpu_e2e.sh (ModelOpt, PyTorch): never used by qforge."""

import json
import os
import time

import numpy as np


def load_ids(path, samples, seq):
    """The calibration samples qforge cuts from the same ids: `samples` consecutive runs of `seq` ids (no BOS).

    `path` is a .npy [samples, seq] int32 array (bench/gpu/ids.py writes it) or qforge tokenize's text output.
    """
    if path.endswith(".npy"):
        a = np.load(path)
    else:
        with open(path) as f:
            a = np.array(f.read().split(), dtype=np.int64)
    a = a.reshape(-1)
    need = samples * seq
    if a.size < need:
        raise SystemExit(f"{path}: {a.size} token ids, fewer than {samples} x {seq}")
    return a[:need].astype(np.int64).reshape(samples, seq)


def batches(ids, batch, device):
    """[batch, seq] int64 tensors on `device`, in order (the last one may be smaller), as qforge batches them."""
    import torch

    t = torch.from_numpy(ids)
    return [t[i : i + batch].to(device) for i in range(0, t.shape[0], batch)]


class Phases:
    """Wall time of named phases (CUDA synchronized at each end) and the peak CUDA memory of each."""

    def __init__(self):
        self.seconds = {}
        self.peak_alloc_mib = {}
        self.peak_reserved_mib = {}
        self.notes = {}

    def run(self, name, fn):
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        self.seconds[name] = time.perf_counter() - t0
        if cuda:
            self.peak_alloc_mib[name] = torch.cuda.max_memory_allocated() / 2**20
            self.peak_reserved_mib[name] = torch.cuda.max_memory_reserved() / 2**20
        print(f"[{name}] {self.seconds[name]:.2f}s", flush=True)
        return out

    def dump(self, path, **extra):
        d = dict(seconds=self.seconds, peak_alloc_mib=self.peak_alloc_mib, peak_reserved_mib=self.peak_reserved_mib,
                 notes=self.notes, **extra)
        with open(path, "w") as f:
            json.dump(d, f, indent=2)
        print(f"wrote {path}", flush=True)


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def versions():
    import torch
    import transformers

    v = dict(torch=torch.__version__, transformers=transformers.__version__)
    try:
        import modelopt

        v["modelopt"] = modelopt.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        v["gpu"] = torch.cuda.get_device_name(0)
    return v
