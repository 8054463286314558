"""Speech: real-time factors of each TTS voice and of ASR, WER per voice, and the whole pipeline.

    python bench/bench_speech.py --sentences 40

The sentence set is fixed: the speakable queries of the speech demo (seeded), in spoken form.
Per voice: TTS and ASR real-time factor (CPU seconds per second of audio, one thread), and the
WER distribution after the shared normaliser (median, p90, share kept at --max-wer). Then
pipelines/speech_sft.py in-process on the demo queries: queries per CPU-second and peak RSS.
Results go to bench/results/speech.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sentences(n: int) -> list[str]:
    from pipelines.demo_corpus import speech_queries
    from synth.speech_text import speakable_reason, spoken_form
    out = []
    for conv in speech_queries(n=4 * n):
        q = conv["messages"][0]["content"]
        if q and speakable_reason(q, 3, 40) is None:
            out.append(spoken_form(q))
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=40)
    ap.add_argument("--max-wer", type=float, default=0.2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/speech.json"))
    a = ap.parse_args()
    from filters.wer import utterance_wer
    from synth.asr import WhisperASR
    from synth.audio import SAMPLE_RATE, audio_struct, resample
    from synth.tts import DEFAULT_VOICES, available_voices, load_voice
    texts = sentences(a.sentences)
    asr = WhisperASR()
    results: dict = {"sentences": len(texts), "voices": {}}
    for voice in available_voices(DEFAULT_VOICES):
        engine = load_voice(voice)
        tts_cpu = asr_cpu = audio_s = 0.0
        wers = []
        for t in texts:
            c0 = time.process_time() + _children_cpu()
            x, sr = engine(t)
            x = resample(x, sr)
            c1 = time.process_time() + _children_cpu()  # flite, festival, espeak-ng run as child processes
            hyp = asr.transcribe(audio_struct(x)["bytes"])
            c2 = time.process_time() + _children_cpu()
            tts_cpu, asr_cpu, audio_s = tts_cpu + c1 - c0, asr_cpu + c2 - c1, audio_s + x.size / SAMPLE_RATE
            wers.append(utterance_wer(t, hyp))
        r = {"tts_rtf": tts_cpu / audio_s, "asr_rtf": asr_cpu / audio_s, "audio_s": audio_s,
             "wer_median": statistics.median(wers), "wer_p90": float(np.percentile(wers, 90)),
             "wer_mean": sum(wers) / len(wers), "kept_share": sum(w <= a.max_wer for w in wers) / len(wers)}
        results["voices"][voice] = r
        print(f"{voice:32s} TTS RTF {r['tts_rtf']:.3f}  ASR RTF {r['asr_rtf']:.3f}  WER median "
              f"{r['wer_median']:.3f} p90 {r['wer_p90']:.3f}  kept {r['kept_share']:.0%}", flush=True)
    from bench_pipeline import child  # CPU seconds and peak RSS of a child process
    wh = tempfile.mkdtemp()
    run = child([sys.executable, "pipelines/speech_sft.py", "--executor", "local", "--quiet", "--warehouse", wh])
    from schemas.store import Store
    acc = Store(wh).properties("speech_sft")["accounting"]
    cpu = run["cpu_s"]
    results["pipeline"] = {"queries_in": acc["rows_in"], "kept": acc["kept"], "cpu_s": cpu,
                           "queries_per_cpu_s": acc["rows_in"] / cpu, "peak_rss_mb": run["peak_rss_mb"],
                           "rejects_by_reason": acc["rejects_by_reason"]}
    print(f"pipeline: {acc['rows_in']} queries, {acc['kept']} kept, {acc['rows_in'] / cpu:.2f} queries/CPU-s, "
          f"peak {run['peak_rss_mb']:.0f} MB", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
