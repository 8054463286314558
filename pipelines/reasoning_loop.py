"""The closed loop: teacher data → verifier-filtered SFT → the model solves fresh problems → verify
→ train on what it got right (STaR / ReST-EM), measured against a compute-matched control.

    python pipelines/reasoning_loop.py                         # one seed: 4 rounds, 2 processes (see bench/README.md)
    python pipelines/reasoning_loop.py --seeds 0 1 2 --jobs 3 --executor local --threads 1   # table + curve over seeds
    python pipelines/reasoning_loop.py --rounds 1 --no-ablation --sft-steps 200 --eval-problems 200   # a quick look
    ray job submit --address http://127.0.0.1:8275 --working-dir . -- \
        python pipelines/reasoning_loop.py --warehouse /abs/warehouse

Round 0: `--teacher-problems` word problems with worked solutions from a teacher that is wrong on
`--teacher-error-rate` of them (`--teacher-errors`: how) → the rule verifier keeps the right ones
(`sft-round-0`) → tokenizer + SFT from scratch for `--sft-steps`, keeping the best step on a dev set
(`model-round-0`). Round r ≥ 1: `--sample-problems`
fresh problems with an answer but no solution, levels weighted by the last pass rates (a
curriculum), k samples each from the current model (the reasoning-data pipeline with
`builtin:<checkpoint>`) → verify → SFT on the teacher data plus every verified sample so far,
continuing from the last round's model (`--init last`) or from round 0's (`--init base`, ReST-EM).
The control spends the
same training tokens per round on the teacher data only (with `--workers 2` it, the ablation and
the held-out scoring run in a second process, `pipelines/loop_side.py`): the loop's gain is loop − control,
paired on the same held-out problems. Two more arms bound what that gain means: the teacher ceiling
(each round, the teacher's worked solutions to the same fresh problems, trained with the loop's
steps: what a perfect sampler would give) and, beside the filtered-vs-unfiltered ablation, its
row-matched arm (unfiltered data subsampled to the filtered row count: quality at equal quantity).
`--train-workers N` runs the rounds' SFT on Ray Train workers. Held-out and dev problems are never
trained on: every training and sampled problem is checked against them by id and by a canonical form
(numbers + operations, names and items ignored: `filters/twins.py`). DPO on the round's
correct-vs-incorrect pairs is opt-in (`--dpo`; it did not raise greedy accuracy, bench/README.md).

The parts, one idea a module: `loop_config` (the settings, typed), `loop_bench` (training and
scoring shared by both processes), `loop_rounds` (the round driver), `loop_side` (control,
ablation, held-out scoring, in process or in a second one), `loop_integrity` (held-out leaks
raise `HeldoutLeak`), `loop_report` (tables, plot), `loop_seeds` (several seeds). This file is
the command line. `--base PATH|smollm2` runs the loop from a pretrained base instead
(`pipelines/loop_base.py`, its own flags: `python pipelines/loop_base.py --help`).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script

from pipelines.loop_bench import MODELS, conv_key, log
from pipelines.loop_config import LoopConfig
from pipelines.loop_integrity import HeldoutLeak
from pipelines.loop_report import per_seed_lines, print_profile, print_table, summarize
from pipelines.loop_rounds import Loop, unsure_problems, weighted_mix
from schemas.store import default_warehouse

# the loop's public names, as before the split (tests, pipelines/flagship.py)
__all__ = ["MODELS", "HeldoutLeak", "Loop", "LoopConfig", "conv_key", "log", "parser", "per_seed_lines", "print_table",
           "run_main", "summarize", "unsure_problems", "weighted_mix"]


def parser() -> argparse.ArgumentParser:
    from pipelines.script import DefaultsHelpFormatter  # `(default: X)` once, and not for None
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--warehouse", default=default_warehouse(),
                   help="where the loop's tables, checkpoints (<warehouse>/_loop/<run>) and models go")
    p.add_argument("--run", default=None, help="run name (checkpoints under <warehouse>/_loop/<run>)")
    p.add_argument("--seed", type=int, default=0, help="draws every problem set and seeds training and sampling")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run these seeds (each in <warehouse>/seed-S) and print the table over them")
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once with --seeds")
    p.add_argument("--rounds", type=int, default=4, help="rounds after round 0 (sample, verify, train)")
    p.add_argument("--executor", choices=["ray", "local"], default="ray",
                   help="how the sampling and verification pipelines run: ray (embedded, or the cluster in "
                        "RAY_ADDRESS) or local (in process)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for an embedded Ray (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: the cores shared among --workers); results are "
                        "reproducible for one thread count")
    p.add_argument("--workers", type=int, choices=[1, 2], default=None,
                   help="2: the ablation, the control and the held-out scoring run in a second process beside the "
                        "loop (same numbers, less wall time); default 2 on a CPU with 2+ cores, else 1 "
                        "(1 under --seeds)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars: one line per phase")
    g = p.add_argument_group("data")
    g.add_argument("--teacher-problems", type=int, default=2000,
                   help="problems with a worked teacher solution (round 0)")
    g.add_argument("--eval-problems", type=int, default=1000, help="held-out problems (SE ≈ 1.5 points at 1,000)")
    g.add_argument("--dev-problems", type=int, default=300, help="dev set: early stopping and model choice")
    g.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3], help="problem levels (operations per problem)")
    g.add_argument("--teacher-error-rate", type=float, default=0.3, help="share of wrong worked solutions")
    g.add_argument("--teacher-errors", choices=["mixed", "arithmetic"], default="mixed",
                   help="how a wrong solution goes wrong: 'mixed' in the shares of real wrong chains of thought "
                        "(slip 8%%, wrong number 16%%, missing step 22%%, misread sentence 54%%: Wei et al. 2022, "
                        "app. D.2), or arithmetic slips only")
    g.add_argument("--no-ablation", action="store_true",
                   help="skip training on unfiltered teacher data (and its row-matched arm)")
    g.add_argument("--no-row-matched", action="store_true",
                   help="skip the ablation's row-matched arm: unfiltered teacher data subsampled to the filtered "
                        "row count (same steps, same seed), so quality is compared at equal quantity")
    g.add_argument("--no-ceiling", action="store_true",
                   help="skip the teacher-ceiling arm: each round, the teacher's worked solutions to the same fresh "
                        "problems the loop samples, trained like the loop (the ceiling the loop approaches)")
    g = p.add_argument_group("model")
    g.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary trained on the teacher data")
    g.add_argument("--bpe-digits", action="store_true",
                   help="let BPE merge digits into number tokens (default: one token per digit)")
    g.add_argument("--dim", type=int, default=128, help="model width")
    g.add_argument("--layers", type=int, default=4, help="transformer blocks")
    g.add_argument("--heads", type=int, default=4, help="query heads")
    g.add_argument("--kv-heads", type=int, default=2, help="key/value heads (grouped-query attention)")
    g.add_argument("--ffn-dim", type=int, default=352, help="SwiGLU hidden width")
    g.add_argument("--max-seq-len", type=int, default=256, help="longest sequence the model takes (RoPE table)")
    g.add_argument("--rope-fraction", type=float, default=0.75,
                   help="share of each head's dims that rotate (Phi-4-Mini: 0.75)")
    g = p.add_argument_group("training")
    g.add_argument("--sft-steps", type=int, default=3200,
                   help="round 0 and the ablation: training steps (the best dev step is kept)")
    g.add_argument("--eval-every", type=int, default=100, help="round 0: dev scoring interval (steps)")
    g.add_argument("--patience", type=int, default=0,
                   help="round 0 and the ablation: 0 (default) trains all --sft-steps and keeps the best dev step; N "
                        "stops after N dev scores without a gain (a dev score's SE is ~2.5 points: patience 3 once "
                        "stopped a round 0 at a noisy peak, 0.09 below the same seed trained to the end)")
    g.add_argument("--min-steps", type=int, default=1600,
                   help="round 0 and the ablation: dev scores are 4× sparser before this step, and --patience N never "
                        "stops training before it (at 1,024 tokens a step the dev curve sits near zero to ~1,100 "
                        "steps; at 800 patience stopped one ablation at step 900)")
    g.add_argument("--lr", type=float, default=3e-3,
                   help="round 0 and the ablation: peak learning rate (AdamW, warm-up then cosine decay)")
    g.add_argument("--tokens-per-batch", type=int, default=1024,
                   help="round 0 and the ablation (from scratch): tokens per optimizer step")
    g.add_argument("--round-tokens-per-batch", type=int, default=2048,
                   help="rounds ≥ 1, loop and control alike: tokens per optimizer step")
    g.add_argument("--packing", choices=["bfd", "pad"], default="pad",
                   help="bfd: best-fit-decreasing packing with document masks; pad: length buckets")
    g.add_argument("--seq-len", type=int, default=128, help="packed row length")
    g.add_argument("--round-tokens", type=int, default=600_000,
                   help="training tokens per round, the same for the loop and the control")
    g.add_argument("--rft-lr", type=float, default=1e-3, help="rounds ≥ 1, loop and control alike: peak learning rate")
    g.add_argument("--init", choices=["base", "last"], default="last",
                   help="each round continues from the last round's model, or retrains from round 0's (ReST-EM); "
                        "'last' beat its control by +5.5 points at round 3, 'base' by +3.4 (merged-digit tokens, "
                        "bench/README.md)")
    g.add_argument("--reuse-checkpoints", action="store_true",
                   help="a from-scratch checkpoint (round 0, ablation) already in this run's directory with the "
                        "same settings and data is loaded, not retrained (to try round-1+ variants on one round 0)")
    g.add_argument("--train-workers", type=int, default=None,
                   help="rounds ≥ 1 (loop, control, ceiling): SFT on N Ray Train workers (model/train_ray.py, as "
                        "`curate train`) instead of in this process; trains in curate train's document order, so "
                        "not bit-identical to an in-process run. Round 0 and the ablation (dev-picked steps) stay "
                        "in process. Implies --workers 1")
    g.add_argument("--train-resources", default="cpus:1", help="per Ray Train worker: cpus:N,gpus:N")
    g.add_argument("--dpo", action="store_true", help="DPO after each round's SFT (kept only where dev improves)")
    g.add_argument("--dpo-steps", type=int, default=40, help="DPO steps a round (with --dpo)")
    g.add_argument("--dpo-lr", type=float, default=1e-5, help="DPO learning rate (with --dpo)")
    g.add_argument("--beta", type=float, default=0.1, help="DPO's beta: how far the policy may move from the reference")
    g.add_argument("--rpo-alpha", type=float, default=1.0, help="weight of the chosen answer's NLL in the DPO loss")
    g.add_argument("--min-pairs", type=int, default=20, help="fewer pairs than this: skip DPO that round")
    g = p.add_argument_group("sampling")
    g.add_argument("--sample-problems", type=int, default=4000, help="fresh answer-only problems per round")
    g.add_argument("--k", type=int, default=2, help="samples per problem per round")
    g.add_argument("--unsure-copies", type=int, default=1,
                   help="times a verified sample is trained on when its problem was solved by some of its k "
                        "samples but not all (1: every sample once)")
    g.add_argument("--curriculum-floor", type=float, default=0.05,
                   help="level weight = p(1-p) of the last pass rate + this floor")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of the rounds")
    g.add_argument("--max-new-tokens", type=int, default=96,
                   help="tokens a sample or a held-out answer may take before it is cut off")
    g.add_argument("--eval-k", type=int, default=4,
                   help="held-out samples per problem for pass@k / maj@k at round 0 and the last round (1: off)")
    return p


def resolve_workers(args: argparse.Namespace) -> None:
    """Two processes on a CPU with two or more cores (one on a GPU, where they would share it), and
    the cores split between them: the default's numbers are then those of `--threads 1` on 2 cores."""
    import torch
    cores = os.cpu_count() or 1
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if args.workers is None:
        args.workers = 1 if gpu or cores < 2 or args.train_workers else 2
    if args.threads is None and not gpu:
        args.threads = int(os.environ.get("CURATE_THREADS", 0)) or max(1, cores // args.workers)


def run_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(x == "--base" or x.startswith("--base=") for x in argv):  # a pretrained base: its own loop and flags
        from pipelines.loop_base import main as base_main
        return base_main(argv)
    p = parser()
    args = p.parse_args(argv)
    if args.unsure_copies < 1:  # 0 or less would drop verified samples from training without a word
        p.error(f"--unsure-copies must be at least 1, got {args.unsure_copies}")
    if args.patience < 0:
        p.error(f"--patience must be 0 (train all --sft-steps) or more, got {args.patience}")
    if args.train_workers is not None:
        from model.train_ray import parse_resources
        if args.train_workers < 1:
            p.error(f"--train-workers must be at least 1, got {args.train_workers}")
        if args.workers == 2:  # a second process would start a second Ray beside the first
            p.error("--train-workers runs with --workers 1 (Ray Train's workers already share the cores)")
        try:
            parse_resources(args.train_resources)
        except ValueError as e:
            p.error(str(e))
    if args.seeds:
        from pipelines.loop_seeds import run_seeds
        return run_seeds(argv, args.seeds, args.jobs, args.warehouse, args.run, args.workers)
    resolve_workers(args)
    cfg = LoopConfig.from_args(args)  # the one conversion: every part of the loop reads cfg from here on
    from schemas.engine.raysession import RayStartFailed
    try:
        record = Loop(cfg).run()
    except RayStartFailed as e:  # the loop starts Ray first, before any work
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(record)
    assert cfg.workers is not None  # resolve_workers set it
    print_profile(record, cfg.workers)
    print(f"record: {os.path.join(os.path.abspath(cfg.warehouse), '_loop', record['run'], 'record.json')}")
    return 0

if __name__ == "__main__":
    sys.exit(run_main())
