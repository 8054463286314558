"""Device, dtype and thread settings: CPU by default with one sensible thread count, CUDA
and bf16 when present."""
from __future__ import annotations

import os

import torch


def setup(threads: int | None = None, device: str | None = None,
          dtype: str | None = None) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None). Threads: given, or env CURATE_THREADS, or all cores
    (Ray workers start with 1 and keep it, so it is always set explicitly)."""
    n = threads or int(os.environ.get("CURATE_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    want = dtype or ("bfloat16" if dev.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32")
    return torch.device(dev), (torch.bfloat16 if want == "bfloat16" else None)
