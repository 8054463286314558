"""Multi-step word problems over a far larger space than `synth.problems.word_problem`: the loop on
a pretrained model needs fresh problems every round that are not held-out twins.

The toy generator has one story (a person's count of items) and five operations on small
numbers: level 1 has ~1,700 distinct problems and 695 of 1,000 held-out problems share their
operation sequence and answer with a training problem. Here a problem is a scenario (money, a
shop's stock, a tank's water, distances, minutes, a farm, savings) told with that scenario's own
verbs, 2-4 operations among add, subtract, groups added or removed ("buys 4 boxes of 12"), a
multiple ("doubles"), an even share ("splits equally among 3 and keeps one part") and a unit
conversion ("2 hours" in a minutes story), on numbers up to a few hundred: the answer is an exact
integer, the worked solution one line per step. `level` is the number of operations, the
difficulty knob (`digits` is the second: the size of the numbers).

Rows have the `problems` table's columns (problem, answer, level, reference_cot, source) like
`synth.problems`; with `error_rate` > 0 a worked solution goes wrong at one step in the shares of
`synth.problems.TEACHER_ERRORS`, the answer staying right (the verifier must catch it).
"""
from __future__ import annotations

import random
from typing import Any

from synth.problems import NAMES, TEACHER_ERRORS

# One scenario: the running quantity's unit, its opening, the question, and a sentence per
# operation ({w} who, {b} {c} numbers, {g} a group noun, {big} a larger unit and its factor).
SCENARIOS: list[dict[str, Any]] = [
    {"unit": "dollars", "start": "{w} has ${x}.", "ask": "How many dollars does {w} have now?",
     "add": ["{w} earns ${b} walking dogs.", "{w} gets ${b} as a birthday gift.", "{w} finds ${b} in a coat pocket."],
     "sub": ["{w} spends ${b} on a book.", "{w} pays ${b} for lunch.", "{w} gives ${b} to a friend."],
     "gadd": ["{w} sells {b} old toys for ${c} each.", "{w} works {b} hours at ${c} per hour."],
     "gsub": ["{w} buys {b} notebooks at ${c} each.", "{w} buys {b} tickets that cost ${c} each."],
     "mul": ["The money {w} has {times} after a good month."],
     "div": ["{w} splits the money equally into {k} envelopes and keeps only one envelope."]},
    {"unit": "cans", "start": "A shop has {x} cans of soup.", "ask": "How many cans of soup does the shop have now?",
     "add": ["A delivery brings {b} more cans.", "The shop finds {b} cans in the back room."],
     "sub": ["Customers buy {b} cans.", "The shop throws away {b} dented cans."],
     "gadd": ["The shop receives {b} boxes with {c} cans in each box.", "{b} crates of {c} cans arrive."],
     "gsub": ["{b} customers each buy {c} cans.", "The shop sends {b} boxes of {c} cans to another store."],
     "mul": ["After a big order, the number of cans {times}."],
     "div": ["The cans are shared equally among {k} stores, and this shop keeps one share."],
     "big": ("dozen", 12, ["The shop orders {b} dozen more cans."])},
    {"unit": "liters", "start": "A tank holds {x} liters of water.", "ask": "How many liters are in the tank now?",
     "add": ["Rain adds {b} liters.", "A farmer pours in {b} liters."],
     "sub": ["A leak lets out {b} liters.", "{b} liters are used to water the garden."],
     "gadd": ["{b} buckets of {c} liters each are poured in.", "A hose runs for {b} minutes at {c} liters a minute."],
     "gsub": ["{b} bottles of {c} liters each are filled from the tank.",
              "{b} animals drink {c} liters each from the tank."],
     "mul": ["After a storm, the amount of water {times}."],
     "div": ["The water is split equally among {k} tanks, and this tank keeps one part."]},
    {"unit": "km", "start": "A truck has driven {x} km this week.", "ask": "How many km has the truck driven in total?",
     "add": ["It drives {b} km more on Friday.", "A detour adds {b} km."],
     "sub": ["The driver finds that {b} km were counted twice and takes them off."],
     "gadd": ["It makes {b} trips of {c} km each.", "It drives for {b} hours at {c} km per hour."],
     "gsub": ["{b} trips of {c} km each are cancelled and taken off the total."],
     "mul": ["By the end of the month the distance {times}."],
     "div": ["The distance is shared equally among {k} drivers; count only one driver's part."]},
    {"unit": "minutes", "start": "{w} practiced piano for {x} minutes.",
     "ask": "How many minutes did {w} practice in total?",
     "add": ["{w} practices {b} more minutes in the evening.", "{w} adds {b} minutes on Sunday."],
     "sub": ["{w} skips {b} minutes of a planned session, so take them off."],
     "gadd": ["{w} plays {b} songs that take {c} minutes each.", "{w} has {b} lessons of {c} minutes."],
     "gsub": ["{b} lessons of {c} minutes each are cancelled, so take them off."],
     "mul": ["The next month, {w}'s practice time {times}."],
     "div": ["{w} splits the total equally over {k} weeks; count one week."],
     "big": ("hours", 60, ["{w} practices {b} hours more at a summer camp."])},
    {"unit": "eggs", "start": "A farm collects {x} eggs.", "ask": "How many eggs does the farm have now?",
     "add": ["The hens lay {b} more eggs.", "A neighbour gives the farm {b} eggs."],
     "sub": ["{b} eggs break.", "The farm uses {b} eggs for baking."],
     "gadd": ["{b} hens each lay {c} more eggs.", "The farm buys {b} trays of {c} eggs."],
     "gsub": ["The farm sells {b} cartons of {c} eggs.", "{b} families each take {c} eggs."],
     "mul": ["By the weekend the number of eggs {times}."],
     "div": ["The eggs are packed equally into {k} crates, and one crate is kept."],
     "big": ("dozen", 12, ["The farm buys {b} dozen eggs."])},
    {"unit": "points", "start": "{w} has {x} points in a game.", "ask": "How many points does {w} have now?",
     "add": ["{w} wins {b} points in a bonus round.", "{w} scores {b} more points."],
     "sub": ["{w} loses {b} points for a mistake.", "{w} spends {b} points on a power-up."],
     "gadd": ["{w} collects {b} stars worth {c} points each.", "{w} clears {b} levels for {c} points each."],
     "gsub": ["{w} buys {b} items costing {c} points each.", "{w} gets {b} penalties of {c} points each."],
     "mul": ["A special card makes {w}'s points {times_base}."],
     "div": ["{w} shares the points equally with a team of {k} and keeps one share."]},
]
TIMES = {2: ("doubles", "double"), 3: ("triples", "triple"), 4: ("grows four times as large", "four times as large")}
OPS = ("add", "sub", "gadd", "gsub", "mul", "div", "big")
SOURCE = "multistep"


def _number(rng: random.Random, digits: int, lo: int = 2) -> int:
    return rng.randint(lo, max(lo + 1, 10 ** digits - 1))


def _choose_op(rng: random.Random, scen: dict, x: int, digits: int) -> str:
    """An operation that keeps the value a positive integer and the numbers in range."""
    ops = [o for o in OPS if o in scen]
    for _ in range(50):
        op = rng.choice(ops)
        if op in ("sub", "gsub") and x < 4:
            continue
        if op == "mul" and x > 10 ** digits * 2:
            continue
        if op == "div" and not any(x % k == 0 and x // k >= 2 for k in (2, 3, 4, 5)):
            continue
        return op
    return "add"


def _numbers(rng: random.Random, op: str, x: int, digits: int) -> tuple[int, ...]:
    """The numbers of one operation on value x."""
    if op == "add":
        return (_number(rng, digits),)
    if op == "sub":
        return (rng.randint(1, x - 1),)
    if op == "gadd":
        return rng.randint(2, 9), rng.randint(2, max(3, min(25, 10 ** digits // 4)))
    if op == "gsub":
        b = rng.randint(2, max(2, min(9, (x - 1) // 2)))
        return b, rng.randint(1, max(1, (x - 1) // b))
    if op == "mul":
        return (rng.choice([2, 2, 3, 4] if x < 50 else [2, 3]),)
    if op == "div":
        return (rng.choice([k for k in (2, 3, 4, 5) if x % k == 0 and x // k >= 2]),)
    return (rng.randint(2, 5),)  # big: b of the larger unit


def apply(op: str, nums: tuple[int, ...], x: int, factor: int = 1) -> int:
    if op == "add":
        return x + nums[0]
    if op == "sub":
        return x - nums[0]
    if op == "gadd":
        return x + nums[0] * nums[1]
    if op == "gsub":
        return x - nums[0] * nums[1]
    if op == "mul":
        return x * nums[0]
    if op == "div":
        return x // nums[0]
    return x + nums[0] * factor


def work_line(op: str, nums: tuple[int, ...], x: int, factor: int = 1) -> str:
    """The worked line of one step (the value it reaches is always its last number)."""
    y = apply(op, nums, x, factor)
    if op == "add":
        return f"{x} + {nums[0]} = {y}"
    if op == "sub":
        return f"{x} - {nums[0]} = {y}"
    if op in ("gadd", "gsub", "big"):
        b, c = (nums[0], factor) if op == "big" else nums
        sign = "-" if op == "gsub" else "+"
        return f"{b} * {c} = {b * c}, {x} {sign} {b * c} = {y}"
    if op == "mul":
        return f"{x} * {nums[0]} = {y}"
    return f"{x} / {nums[0]} = {y}"


# a misread sentence: the operation a hurried reader takes for it
_MISREAD = {"add": "sub", "sub": "add", "gadd": "add", "gsub": "sub", "mul": "add", "div": "sub", "big": "add"}


def _wrong_step(op: str, nums: tuple[int, ...], x: int, factor: int, kind: str,
                noise: random.Random) -> tuple[str | None, int]:
    """One step of a wrong solution: (its line or None when skipped, the value it leaves)."""
    right = apply(op, nums, x, factor)
    if kind == "missing_step":
        return None, x
    if kind == "semantic":
        op2 = _MISREAD[op]
        grouped = op in ("gadd", "gsub", "big")  # read as one plain amount
        n2 = (nums[0] * (nums[1] if len(nums) > 1 else factor),) if grouped else nums
        if op2 == "sub" and n2[0] >= x:
            n2 = (max(1, x - 1),)
        y = apply(op2, n2, x)
        if y != right and y > 0:
            return work_line(op2, n2, x), y
    if kind == "symbol":
        i = noise.randrange(len(nums))
        n2 = tuple(n + (noise.choice([-1, 1, 2]) if j == i else 0) for j, n in enumerate(nums))
        n2 = tuple(max(1, n) for n in n2)
        if not (op == "div" and x % n2[0]) and not (op in ("sub", "gsub") and apply(op, n2, x, factor) <= 0):
            y = apply(op, n2, x, factor)
            if y != right:
                return work_line(op, n2, x, factor), y
    y = right + noise.choice([-3, -2, -1, 1, 2, 10])  # a careless result
    line = work_line(op, nums, x, factor)
    return line.rsplit("= ", 1)[0] + f"= {y}", y


def _sentence(rng: random.Random, scen: dict, op: str, nums: tuple[int, ...], who: str) -> str:
    if op == "big":
        return rng.choice(scen["big"][2]).format(w=who, b=nums[0])
    text = rng.choice(scen[op])
    fill = {"w": who, "b": nums[0], "c": nums[1] if len(nums) > 1 else "", "k": nums[0]}
    if op == "mul":
        fill.update(times=TIMES[nums[0]][0], times_base=TIMES[nums[0]][1])
    return text.format(**fill)


def multistep_problem(rng: random.Random, level: int, error_rate: float = 0.0, digits: int = 2,
                      errors: dict[str, float] | None = None) -> dict:
    """A problem with `level` operations on numbers of up to `digits` digits; with p = error_rate
    its worked solution goes wrong at one step (the problem is the same whatever the error rate)."""
    noise = random.Random(rng.getrandbits(64))
    scen = rng.choice(SCENARIOS)
    who = rng.choice(NAMES)
    factor = scen["big"][1] if "big" in scen else 1
    x = start = _number(rng, digits, lo=10)
    sentences, steps = [scen["start"].format(w=who, x=x)], []
    for _ in range(level):
        op = _choose_op(rng, scen, x, digits)
        nums = _numbers(rng, op, x, digits)
        sentences.append(_sentence(rng, scen, op, nums, who))
        steps.append((op, nums))
        x = apply(op, nums, x, factor)
    wrong_at = noise.randrange(level) if noise.random() < error_rate else -1
    kind = noise.choices(list(errors or TEACHER_ERRORS), weights=list((errors or TEACHER_ERRORS).values()))[0] \
        if wrong_at >= 0 else None
    lines, v = [], start
    for i, (op, nums) in enumerate(steps):
        if i == wrong_at:
            assert kind is not None  # drawn whenever wrong_at >= 0
            line, v = _wrong_step(op, nums, v, factor, kind, noise)
        else:
            line, v = work_line(op, nums, v, factor), apply(op, nums, v, factor)
        if line is not None:
            lines.append(line)
    cot = "\n".join(lines + [f"The answer is {v}."])
    return {"problem": " ".join(sentences + [scen["ask"].format(w=who)]), "answer": str(x), "level": level,
            "reference_cot": cot, "source": SOURCE}


def multistep_problems(n: int, seed: int = 0, levels: tuple[int, ...] = (2, 3, 4), error_rate: float = 0.0,
                       digits: int = 2) -> list[dict]:
    rng = random.Random(seed)
    return [multistep_problem(rng, rng.choice(levels), error_rate, digits) for _ in range(n)]


def structure_key(row: dict) -> str:
    """What two problems share when they are the same exercise told differently: the numbers in
    order and the answer (scenario, names and verbs aside). `filters.twins` keys on numbers plus
    cue words; this key also joins retellings whose verbs are not cue words."""
    import re

    return " ".join(re.findall(r"\d+", row["problem"])) + " => " + row["answer"]
