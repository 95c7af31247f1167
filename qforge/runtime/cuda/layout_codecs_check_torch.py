# Compares numerics/layout.h's non-saturating FP8 encoders (ModelOpt's export casts) and the BF16/FP16
# encoders of numerics/half.h with PyTorch's own casts (CPU and CUDA), over every fp32 bit pattern.
# Usage: python3 layout_codecs_check_torch.py /path/to/libcodecs.so   (see layout_codecs_check.cu)
# Exit status 0 iff no non-NaN input disagrees; NaN inputs (payload/sign of NaN codes) are counted apart.
import ctypes
import sys

import numpy as np
import torch

lib = ctypes.CDLL(sys.argv[1])
CASES = [
    ("e4m3 nonsat", torch.float8_e4m3fn, torch.uint8, np.uint8, lib.qf_encode_e4m3_nonsat),
    ("e5m2 nonsat", torch.float8_e5m2, torch.uint8, np.uint8, lib.qf_encode_e5m2_nonsat),
    ("bf16 rne", torch.bfloat16, torch.int16, np.uint16, lib.qf_encode_bf16),
    ("f16 rne", torch.float16, torch.int16, np.uint16, lib.qf_encode_f16),
]
CHUNK = 1 << 26
status = 0
cuda = torch.cuda.is_available()
for name, tdtype, view, npdt, fn in CASES:
    bad = {"cpu": 0, "cuda": 0}
    nan_bad = 0
    first = None
    for start in range(0, 1 << 32, CHUNK):
        bits = np.arange(start, start + CHUNK, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        mine = np.empty(CHUNK, dtype=npdt)
        fn(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(mine.ctypes.data), ctypes.c_size_t(CHUNK))
        nan = np.isnan(x)
        t = torch.from_numpy(x)
        refs = {"cpu": t.to(tdtype).view(view).numpy().view(npdt)}
        if cuda:
            refs["cuda"] = t.cuda().to(tdtype).view(view).cpu().numpy().view(npdt)
        for dev, ref in refs.items():
            diff = ref != mine
            bad[dev] += int(np.count_nonzero(diff & ~nan))
            if dev == "cpu":
                nan_bad += int(np.count_nonzero(diff & nan))
            if first is None and np.any(diff & ~nan):
                i = int(np.argmax(diff & ~nan))
                first = (dev, hex(int(bits[i])), float(x[i]), int(ref[i]), int(mine[i]))
    print(f"{name:12s} all 2^32 inputs: cpu mismatches {bad['cpu']}, cuda mismatches "
          f"{bad['cuda'] if cuda else 'n/a'}, NaN inputs encoded differently {nan_bad}"
          + (f", first {first}" if first else ""), flush=True)
    if bad["cpu"] or bad["cuda"]:
        status = 1
sys.exit(status)
