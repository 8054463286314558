"""Educational-value grading → fastText classifier: how well the classifier agrees with the grader.

    python bench/bench_edu.py                                   # SmolLM2 (offline), 40 demo documents
    python bench/bench_edu.py --generator openai:http://gpu-box:8000/v1#Qwen2.5-7B-Instruct --docs 2000

Runs the real commands a user runs (`pipelines/annotate_edu.py`, then `curate train-classifier`
binarised at --threshold and multi-class) in a fresh warehouse and prints: rows graded and
rejected, the grade distribution, and the classifier's agreement with held-out grades (accuracy
with a Wilson 95% interval, macro-F1, precision/recall of the binary decision). With a grader
that ignores the content (SmolLM2-135M here) agreement is at chance: the number measures the
grader as much as the classifier, so report both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode and check:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return proc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="smollm2", help="any synth/generator_backends.py backend")
    p.add_argument("--docs", type=int, default=40, help="documents to grade (a seeded sample)")
    p.add_argument("--input", default=None, help="documents (file or table); default: the demo text corpus")
    p.add_argument("--threshold", type=int, default=2,
                   help="binary label: grade >= threshold (2 suits SmolLM2, which grades 1-2; 3 for a strong grader)")
    p.add_argument("--few-shot", action="store_true", help="worked examples in the prompt (small models)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--valid-frac", type=float, default=0.3)
    p.add_argument("--warehouse", default=None, help="keep the warehouse here (default: a temp dir)")
    args = p.parse_args()
    wh = args.warehouse or tempfile.mkdtemp(prefix="bench-edu-")
    grade = ["pipelines/annotate_edu.py", "--warehouse", wh, "--executor", "local", "--quiet",
             "--generator", args.generator, "--sample", str(args.docs)]
    if args.input:
        grade += ["--input", args.input]
    if args.few_shot:
        grade.append("--few-shot")
    if args.max_tokens:
        grade += ["--max-tokens", str(args.max_tokens)]
    t0 = time.perf_counter()
    _run(grade)
    seconds = time.perf_counter() - t0
    sys.path.insert(0, REPO)
    from schemas.store import Store
    store = Store(wh)
    acc = store.properties("edu_grades")["accounting"]
    scores = Counter(store.read_arrow("edu_grades", ["edu_score"]).column("edu_score").to_pylist())
    print(f"graded {acc['kept']} of {acc['rows_in']} documents in {seconds:.0f} s with {args.generator}; "
          f"rejects {acc['rejects_by_reason']}")
    print("grades: " + ", ".join(f"{k}: {v}" for k, v in sorted(scores.items())))
    for mode in (["--threshold", str(args.threshold)], ["--multiclass"]):
        out = _run(["-c", "from pipelines.cli import main; main()", "--warehouse", wh, "train-classifier",
                    "--input", "edu_grades",
                    "--valid-frac", str(args.valid_frac), "--json", *mode], check=False)
        if out.returncode:
            print(f"{' '.join(mode)}: no classifier: {out.stderr.strip().splitlines()[-1]}")
            continue
        card = json.loads(out.stdout[out.stdout.index("{"):])
        print(f"{' '.join(mode)}: " + json.dumps(card.get("metrics", card), default=str))


if __name__ == "__main__":
    main()
