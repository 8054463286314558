"""Keep a synthetic utterance only if the audio is sound and ASR hears what was meant.

Audio checks first (empty, silent, clipped, a duration implausible for the number of words),
then WER per utterance with jiwer, after the same normaliser on reference and hypothesis.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.engine.stage import annotate, reject_where, stage
from schemas.tables import field
from synth.audio import decode
from synth.speech_text import wer_normalize


def audio_problem(audio_bytes: bytes | None, words: int, min_wps: float, max_wps: float,
                  silence_rms: float, clip_frac: float) -> tuple[str | None, str | None]:
    if not audio_bytes:
        return "empty_audio", None
    try:
        x, sr = decode(audio_bytes)
    except Exception as e:  # noqa: BLE001 - anything soundfile cannot read
        return "bad_audio", f"{type(e).__name__}: {e}"[:200]
    if x.size == 0:
        return "empty_audio", None
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms < silence_rms:
        return "silent_audio", f"rms {rms:.5f}"
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > clip_frac:
        return "clipped_audio", f"{clipped:.2%} of samples at full scale"
    seconds = x.size / sr
    wps = words / seconds if seconds else float("inf")
    if not (min_wps <= wps <= max_wps):
        return "implausible_duration", f"{words} words in {seconds:.2f} s"
    return None, None


def utterance_wer(reference: str, hypothesis: str) -> float | None:
    """WER of one utterance; None where the reference is empty (jiwer would count insertions)."""
    import jiwer
    ref, hyp = wer_normalize(reference or ""), wer_normalize(hypothesis or "")
    if not ref:
        return None
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


@stage(adds=[])
def check_audio(batch: pa.Table, min_words_per_s: float = 0.7, max_words_per_s: float = 6.0,
                silence_rms: float = 0.003, max_clipped: float = 0.002) -> pa.Table:
    """Reject audio that is empty, undecodable, silent, clipped, or too short/long for its text."""
    out = [audio_problem((a or {}).get("bytes"), len(wer_normalize(t or "").split()), min_words_per_s,
                         max_words_per_s, silence_rms, max_clipped)
           for a, t in zip(batch.column("audio").to_pylist(), batch.column("text").to_pylist())]
    for reason in sorted({r for r, _ in out if r}):
        batch = reject_where(batch, [r == reason for r, _ in out], reason,
                             [d if r == reason else None for r, d in out])
    return batch


@stage(adds=[field("wer", pa.float32(), stats="hist:0:1:20:right@voice")])  # a bar ends at max_wer
def wer_filter(batch: pa.Table, max_wer: float = 0.2) -> pa.Table:
    """`wer` of the transcript against the spoken text; above `max_wer` is `high_wer`."""
    wers = [utterance_wer(r, h) for r, h in zip(batch.column("text").to_pylist(),
                                                batch.column("asr_text").to_pylist())]
    batch = annotate(batch, wer=pa.array(wers, pa.float32()))
    batch = reject_where(batch, [w is None for w in wers], "empty_reference")
    return reject_where(batch, [w is not None and w > max_wer for w in wers], "high_wer",
                        [f"{w:.3f} > {max_wer}" if w is not None else None for w in wers])
