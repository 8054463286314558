"""The built-in model's batched generation: this checkout against an older revision of `model/`,
on the same checkpoint and prompts, interleaved, one thread, median of `--repeats`.

    python bench/bench_generate.py --checkpoint <warehouse>/_loop/loop-s0/round0-sft --baseline-rev 9ee201d

Greedy (batches of 64, as held-out scoring) and T=0.8 / top-p 0.95 (batches of 128, as the loop's
sampling). Each side runs in its own process with its own `model/` package on the path; the
report says whether every row's tokens are identical, so a speed-up that changes outputs shows.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import pickle, sys, time
sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
import torch
torch.set_num_threads(1)
from model import checkpoint
from model.sampling import generate
from synth.problems import word_problems
model, tok, _ = checkpoint.load(sys.argv[3], device="cpu")
probs = word_problems(int(sys.argv[4]), seed=77)
prompts = [tok.encode_chat([{"role": "user", "content": p["problem"]}], add_generation_prompt=True)[0] for p in probs]
out, secs = {}, {}
for temp, bs in ((0.0, 64), (0.8, 128)):
    t, res = time.perf_counter(), []
    for i in range(0, len(prompts), bs):
        res += generate(model, prompts[i:i + bs], max_new_tokens=96, stop_id=tok.end, pad_id=tok.pad,
                        temperature=temp, top_p=0.95, seed=i)
    secs[str(temp)], out[str(temp)] = time.perf_counter() - t, res
with open(sys.argv[5], "wb") as f:
    pickle.dump((out, secs), f)
"""


def run_once(model_root: str, ckpt: str, n: int, out: str) -> tuple[dict, dict]:
    subprocess.run([sys.executable, "-c", WORKER, model_root, REPO, ckpt, str(n), out], check=True)
    with open(out, "rb") as f:
        return pickle.load(f)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a built-in model checkpoint directory")
    p.add_argument("--baseline-rev", required=True, help="git revision whose model/ is the baseline")
    p.add_argument("--problems", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        os.makedirs(base)
        archive = subprocess.run(["git", "-C", REPO, "archive", args.baseline_rev, "model"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        times: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
        outputs = {}
        for i in range(args.repeats):  # interleaved: the machine's load moves both alike
            for name, root in (("baseline", base), ("current", REPO)):
                out, secs = run_once(root, args.checkpoint, args.problems, os.path.join(tmp, f"{name}{i}.pkl"))
                outputs[name] = out
                for k, v in secs.items():
                    times[name].setdefault(k, []).append(round(v, 3))
    report = {}
    for temp in ("0.0", "0.8"):
        b, c = (statistics.median(times[n][temp]) for n in ("baseline", "current"))
        same = sum(x == y for x, y in zip(outputs["baseline"][temp], outputs["current"][temp]))
        report[f"T={temp}"] = {"baseline_s": times["baseline"][temp], "current_s": times["current"][temp],
                               "speedup": round(b / c, 3), "identical_rows": f"{same}/{args.problems}"}
        print(f"T={temp}: baseline median {b:.2f} s {times['baseline'][temp]}, current median {c:.2f} s "
              f"{times['current'][temp]}: {b / c:.2f}x; identical rows {same}/{args.problems}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
