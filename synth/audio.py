"""Audio as the tables store it: 16 kHz mono 16-bit WAV bytes in `{bytes, path, sampling_rate}`."""
from __future__ import annotations

import io
from math import gcd

import numpy as np

SAMPLE_RATE = 16_000


def resample(x: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if sr == target or x.size == 0:
        return x.astype(np.float32)
    from scipy.signal import resample_poly
    g = gcd(sr, target)
    return resample_poly(x, target // g, sr // g).astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def encode_wav(x: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """float32 mono samples and rate of WAV/FLAC/OGG bytes; raises on undecodable audio."""
    import soundfile as sf
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return to_mono(x), sr


def load_16k(data: bytes) -> np.ndarray:
    x, sr = decode(data)
    return resample(x, sr)


def audio_struct(x: np.ndarray, sr: int = SAMPLE_RATE) -> dict:
    return {"bytes": encode_wav(x, sr), "path": None, "sampling_rate": sr}
