"""Problem sources: rows of the `problems` table (problem, answer, level, reference_cot, source).

- `word_problems`: multi-step word problems with exact (integer or rational) answers and a
  worked solution. It doubles as the "teacher" of the built-in loop: with `error_rate` > 0
  some worked solutions go wrong at one step (a slip, a wrong number, a missing step or a misread
  sentence, in the shares found in real wrong chains of thought) and so end on a wrong answer
  while `answer` stays right, as real teacher data does; the verifier is what catches them.
- `mathematics_dataset_problems`: DeepMind's generators (`mathematics-dataset` on PyPI), an
  independent source with symbolic answers too.
- Any user file or table with `problem` and `answer` columns is read by the runner as is.
"""
from __future__ import annotations

import importlib
import json
import random
import sys
from fractions import Fraction
from typing import Any, Iterator

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kemi", "Liam",
         "Mia", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara"]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cards", "coins", "shells", "stamps", "beads"]


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _step(rng: random.Random, x: Fraction, item: str, who: str, allow_fraction: bool) -> tuple[str, str, tuple]:
    """One operation on the running count: (sentence, operation, its numbers)."""
    ops = ["add", "sub", "packs", "times"] + (["share"] if allow_fraction or x.numerator % 2 == 0 else [])
    op = rng.choice(ops)
    if op == "sub" and x <= 2:
        op = "add"
    if op == "add":
        b = rng.randint(2, 20)
        return f"{who} gets {b} more {item}.", "add", (b,)
    if op == "sub":
        b = rng.randint(1, int(x) - 1)
        return f"{who} gives away {b} {item}.", "sub", (b,)
    if op == "packs":
        b, c = rng.randint(2, 5), rng.randint(2, 6)
        return f"{who} buys {b} packs of {item} with {c} in each pack.", "packs", (b, c)
    if op == "share":
        k = rng.choice([2, 3, 4]) if allow_fraction else 2
        return f"{who} keeps only 1/{k} of the {item}.", "share", (k,)
    m = rng.choice([2, 3])
    word = {2: "doubles", 3: "triples"}[m]
    return f"The number of {item} {who} has {word}.", "times", (m,)


def _work(op: str, nums: tuple, v: Fraction) -> tuple[str, Fraction]:
    """The worked line of one operation on the running value, and the new value."""
    if op == "add":
        return f"{_fmt(v)} + {nums[0]} = {_fmt(v + nums[0])}", v + nums[0]
    if op == "sub":
        return f"{_fmt(v)} - {nums[0]} = {_fmt(v - nums[0])}", v - nums[0]
    if op == "packs":
        b, c = nums
        return f"{b} * {c} = {b * c}, and {_fmt(v)} + {b * c} = {_fmt(v + b * c)}", v + b * c
    if op == "share":
        return f"{_fmt(v)} / {nums[0]} = {_fmt(v / nums[0])}", v / nums[0]
    return f"{_fmt(v)} * {nums[0]} = {_fmt(v * nums[0])}", v * nums[0]


# What goes wrong in a wrong worked solution, in the shares Wei et al. (2022, appendix D.2) found
# among 50 wrong GSM8K chains of thought: a calculator error only (8%), a symbol-mapping error (16%:
# the right operation on a wrong number), one step missing (22%), and a semantic error (54%: the
# problem misread, here the wrong operation for a sentence). Each line stays internally
# consistent except the calculator slip, and the later lines build on the wrong value.
TEACHER_ERRORS = {"arithmetic": 0.08, "symbol": 0.16, "missing_step": 0.22, "semantic": 0.54}
_MISREAD = {"add": ("sub", lambda n: n), "sub": ("add", lambda n: n), "packs": ("add", lambda n: (n[0] + n[1],)),
            "share": ("times", lambda n: n), "times": ("add", lambda n: n)}


def _wrong_line(op: str, nums: tuple, v: Fraction, kind: str, noise: random.Random) -> tuple[str | None, Fraction]:
    """One step of a wrong solution: (its line, or None when the step is skipped; the value it leaves)."""
    right_line, right = _work(op, nums, v)
    if kind == "missing_step":
        return None, v
    if kind in ("semantic", "symbol"):
        if kind == "semantic":
            op2, f = _MISREAD[op]
            nums2 = f(nums)
        else:  # a neighbouring number in place of the one the problem gives
            op2, i = op, noise.randrange(len(nums))
            nums2 = tuple(n + (noise.choice([-1, 1, 2]) if j == i else 0) for j, n in enumerate(nums))
            nums2 = tuple(max(2 if op2 in ("share", "times") else 1, n) for n in nums2)
        line, w = _work(op2, nums2, v)
        if w != right:
            return line, w
    w = right + noise.choice([-3, -2, -1, 1, 2, 10])  # a careless result (also where the above coincides)
    return right_line.rsplit("= ", 1)[0] + f"= {_fmt(w)}", w


def word_problem(rng: random.Random, level: int, error_rate: float = 0.0,
                 errors: dict[str, float] | None = None) -> dict:
    """A problem with `level` operations; with p = error_rate its worked solution goes wrong at one
    step, in one of the ways `errors` weighs (default `TEACHER_ERRORS`)."""
    noise = random.Random(rng.getrandbits(64))  # errors draw from their own stream: the problems
    who, item = rng.choice(NAMES), rng.choice(ITEMS)  # are the same whatever the error rate
    x = start = Fraction(rng.randint(3, 30))
    sentences, steps = [f"{who} has {_fmt(x)} {item}."], []
    for _ in range(level):
        sentence, op, nums = _step(rng, x, item, who, allow_fraction=level >= 3)
        sentences.append(sentence)
        steps.append((op, nums))
        x = _work(op, nums, x)[1]
    answer = x
    wrong_at = noise.randrange(level) if noise.random() < error_rate else -1
    kind = None
    if wrong_at >= 0:
        errors = errors or TEACHER_ERRORS
        kind = noise.choices(list(errors), weights=list(errors.values()))[0]
    lines, v = [f"{who} starts with {_fmt(start)} {item}."], start
    for i, (op, nums) in enumerate(steps):
        if i == wrong_at and kind is not None:  # kind is set whenever a step is wrong
            line, v = _wrong_line(op, nums, v, kind, noise)
        else:
            line, v = _work(op, nums, v)
        if line is not None:
            lines.append(line)
    question = f"How many {item} does {who} have now?"
    cot = "\n".join(lines + [f"The answer is {_fmt(v)}."])
    return {"problem": " ".join(sentences + [question]), "answer": _fmt(answer), "level": level,
            "reference_cot": cot, "source": "word_problems"}


def word_problems(n: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3), error_rate: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    return [word_problem(rng, rng.choice(levels), error_rate) for _ in range(n)]


# ---- DeepMind mathematics_dataset ----------------------------------------------------
DEFAULT_MODULES = ("arithmetic__add_or_sub", "arithmetic__mul", "arithmetic__div", "arithmetic__add_sub_multiple",
                   "numbers__gcd", "numbers__lcm", "numbers__div_remainder", "algebra__linear_1d",
                   "polynomials__expand", "calculus__differentiate")


def _load_mathematics_dataset():
    """Import with the shim sympy >= 1.12 needs (`base_solution_linear` moved)."""
    dio = importlib.import_module("sympy.solvers.diophantine.diophantine")
    pkg = sys.modules["sympy.solvers.diophantine"]
    if not hasattr(pkg, "base_solution_linear"):
        pkg.base_solution_linear = dio.base_solution_linear
    from mathematics_dataset.modules import modules
    return modules


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}__{k}" if prefix else k
        out.update(_flatten(v, name) if isinstance(v, dict) else {name: v})
    return out


def mathematics_dataset_problems(n: int, seed: int = 0, modules: tuple[str, ...] = DEFAULT_MODULES,
                                 levels: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    """n problems spread over `modules` and difficulty thirds (levels 0-2 → level 1-3)."""
    import numpy as np

    mods = _load_mathematics_dataset()
    random.seed(seed)
    np.random.seed(seed)
    gens = {}
    for lv in levels:
        lo, hi = lv / 3, (lv + 1) / 3
        flat = _flatten(mods.train(lambda r, lo=lo, hi=hi: (r[0] + lo * (r[1] - r[0]), r[0] + hi * (r[1] - r[0]))))
        gens[lv] = {m: flat[m] for m in modules if m in flat}
    out: list[dict[str, Any]] = []
    i = failures = 0
    while len(out) < n and failures < 10 * n + 100:
        lv = levels[i % len(levels)]
        names = sorted(gens[lv])
        name = names[(i // len(levels)) % len(names)]
        i += 1
        try:
            p = gens[lv][name]()
        except Exception:  # noqa: BLE001 - a module broken on this numpy/sympy: skip it
            failures += 1
            continue
        out.append({"problem": str(p.question), "answer": str(p.answer), "level": lv + 1, "reference_cot": None,
                    "source": f"mathematics_dataset:{name}"})
    return out


def write_jsonl(rows: list[dict], path: str) -> str:
    import os
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def iter_sources(spec: list[str], seed: int, error_rate: float) -> Iterator[dict]:
    """`word:300 mathematics:100:1` → rows from each source in turn; the optional third part
    names the levels (1-3, e.g. `1` or `1,2`): level 1 is what a 135M model can partly solve."""
    for s in spec:
        name, _, rest = s.partition(":")
        count, sep, lv = rest.partition(":")
        n = int(count or 100)
        levels = tuple(int(x) for x in lv.split(",") if x.strip()) if sep else (1, 2, 3)
        if n < 0 or not levels or any(x not in (1, 2, 3) for x in levels):
            raise ValueError(f"bad problem source {s!r}: name:count[:levels], levels among 1,2,3")
        if name == "word":
            yield from word_problems(n, seed, levels=levels, error_rate=error_rate)
        elif name in ("mathematics", "mathematics_dataset"):
            yield from mathematics_dataset_problems(n, seed, levels=tuple(x - 1 for x in levels))
        else:
            raise ValueError(f"unknown problem source {name!r} (word, mathematics)")
