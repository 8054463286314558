"""An evaluation set for the answer verifier built from CATEGORIES of how model outputs write
final answers (issue 27), not from the verifier's rules.

Every case is (completion, reference, label): a true value is drawn, then rendered in one of the
ways real model outputs write it (boxed or not, LaTeX or plain, with text before and after) and
the reference is written in one of the ways datasets write it. The label is set by construction
from the drawn values with `Fraction` arithmetic (a right rendering of the true value is
`correct`; a near miss, i.e. a different value, a flipped sign, a swapped fraction, an open
endpoint for a closed one, a mixed number misread as digits, is `incorrect`), never by asking
the verifier. A completion with no answer in it is `incorrect` (it cannot be right; the verifier
may call it `undecided`).

    python bench/verify_eval_set.py --seed 1 --n 40 > dev.jsonl      # the dev split
    python bench/verify_eval_set.py --seed 2 --n 40 > heldout.jsonl  # held out: scored once

`bench/bench_verify_forms.py` scores `synth/verify.py` on both splits.
"""
from __future__ import annotations

import argparse
import json
import random
from fractions import Fraction

# ---- how a model embeds its final answer in a completion ------------------------------------
# {a} is the answer as written in plain text, {t} as written inside LaTeX math.
WRAPPERS = [
    ("stated", "The answer is {a}."),
    ("stated_final", "Therefore, the final answer is {a}"),
    ("stated_latex", "So the answer is ${t}$."),
    ("boxed", "Putting it together, the final answer is $\\boxed{{{t}}}$."),
    ("boxed_bare", "\\boxed{{{t}}}"),
    ("boxed_display", "We combine the two cases.\n\n$$\\boxed{{{t}}}$$"),
    ("answer_colon", "**Answer:** {a}"),
    ("answer_colon_latex", "Final Answer: The final answer is ${t}$. I hope it is correct."),
    ("hashes", "Adding the parts gives the result.\n#### {a}"),
    ("bare", "{a}"),
    ("chatter", "The answer is {a}. Let me double-check: substituting back, both sides agree, so this is right."),
    ("chatter_boxed", "$\\boxed{{{t}}}$\n\nWait, let me double-check this by plugging it back in. Yes, it works."),
    ("text_after", "After simplifying everything, the answer is {a}, which is what we wanted to show."),
    ("bold", "So, the final answer is **{a}**."),
]


def wrap(rng: random.Random, plain: str, latex: str | None = None, kinds=None) -> tuple[str, str]:
    name, tpl = rng.choice([w for w in WRAPPERS if kinds is None or w[0] in kinds])
    return name, tpl.format(a=plain, t=latex if latex is not None else plain)


# ---- renderings of exact values --------------------------------------------------------------
def frac_latex(v: Fraction, style: str = "frac") -> str:
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v.denominator == 1:
        return f"{sign}{v.numerator}"
    if style == "short" and v.numerator < 10 and v.denominator < 10:
        return f"{sign}\\tfrac{v.numerator}{v.denominator}"
    cmd = {"frac": "\\frac", "dfrac": "\\dfrac", "tfrac": "\\tfrac"}.get(style, "\\frac")
    return f"{sign}{cmd}{{{v.numerator}}}{{{v.denominator}}}"


def frac_plain(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def terminating(v: Fraction) -> bool:
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal(v: Fraction) -> str:
    """An exact decimal string of a terminating fraction."""
    sign = "-" if v < 0 else ""
    v = abs(v)
    k = 0
    while (v * 10 ** k).denominator != 1:
        k += 1
    n = v.numerator * 10 ** k // v.denominator
    s = str(n).rjust(k + 1, "0")
    return sign + (s[:-k] + "." + s[-k:] if k else s)


def thousands(n: int) -> str:
    return f"{n:,}"


def mixed_parts(v: Fraction) -> tuple[int, Fraction]:
    """|v| as whole + proper fraction."""
    a = abs(v)
    w = a.numerator // a.denominator
    return w, a - w


def mixed_latex(v: Fraction, style: str) -> str:
    sign = "-" if v < 0 else ""
    w, f = mixed_parts(v)
    p, q = f.numerator, f.denominator
    if style == "frac":
        return f"{sign}{w}\\frac{{{p}}}{{{q}}}"
    if style == "dfrac":
        return f"{sign}{w}\\dfrac{{{p}}}{{{q}}}"
    if style == "tfrac_short":
        return f"{sign}{w} \\tfrac{p}{q}" if p < 10 and q < 10 else f"{sign}{w} \\tfrac{{{p}}}{{{q}}}"
    return f"{sign}{w} {p}/{q}"  # plain


# ---- categories ------------------------------------------------------------------------------
def case(cls, completion, reference, label, source, truncated=False):
    return {"class": cls, "completion": completion, "reference": reference,
            "label": "correct" if label else "incorrect", "truncated": truncated, "source": source}


def cat_mixed(rng):
    out = []
    w, q = rng.randint(1, 12), rng.randint(2, 9)
    p = rng.randint(1, q - 1)
    while Fraction(p, q).denominator != q:
        p = rng.randint(1, q - 1)
    v = (w + Fraction(p, q)) * rng.choice([1, 1, -1])
    style = rng.choice(["frac", "dfrac", "tfrac_short", "plain"])
    tex = mixed_latex(v, style)
    plain = tex if style == "plain" else tex
    misread = Fraction(int(f"{w}{p}"), q) * (1 if v > 0 else -1)   # "3\frac12" read as 31/2
    naive_neg = -w + Fraction(p, q) if v < 0 else None               # "-2\frac13" read as -2 + 1/3
    refs = [frac_plain(v), frac_latex(v), decimal(v) if terminating(v) else frac_plain(v)]
    name, comp = wrap(rng, plain, tex)
    ref = rng.choice(refs)
    out.append(case("mixed:latex_pred" if style != "plain" else "mixed:plain_pred", comp, ref, True,
                    f"mixed number {style} ({name}) vs improper/decimal"))
    # the same true value, with the mixed number in the reference and the improper fraction predicted
    name, comp = wrap(rng, frac_plain(v), frac_latex(v, rng.choice(["frac", "dfrac"])))
    out.append(case("mixed:mixed_reference", comp, mixed_latex(v, rng.choice(["frac", "plain", "dfrac"])), True,
                    f"improper fraction vs mixed-number reference ({name})"))
    # near misses: the misread value as a reference (the bug: accepted), or as the prediction
    ref = rng.choice([frac_plain(misread), decimal(misread) if terminating(misread) else frac_latex(misread)])
    name, comp = wrap(rng, plain, tex)
    out.append(case("mixed:misread", comp, ref, misread == v, f"mixed number vs the digits-joined misreading ({name})"))
    name, comp = wrap(rng, frac_plain(misread), frac_latex(misread))
    out.append(case("mixed:misread", comp, mixed_latex(v, rng.choice(["frac", "dfrac", "plain"])), misread == v,
                    f"digits-joined misreading vs mixed reference ({name})"))
    if naive_neg is not None:
        name, comp = wrap(rng, frac_plain(naive_neg), frac_latex(naive_neg))
        out.append(case("mixed:negative", comp, mixed_latex(v, "frac"), naive_neg == v,
                        f"-(w+p/q) misread as -w+p/q ({name})"))
        name, comp = wrap(rng, tex, tex)
        out.append(case("mixed:negative", comp, frac_plain(v), True, f"negative mixed number ({name})"))
    return out


def cat_unicode_minus(rng):
    v = rng.choice([Fraction(-rng.randint(1, 999)), Fraction(-rng.randint(1, 99), rng.randint(2, 9)),
                    -Fraction(rng.randint(1, 999), 100)])
    txt = frac_plain(v) if rng.random() < 0.6 or terminating(v) is False else decimal(v)
    u = txt.replace("-", "\u2212")
    tex = frac_latex(v).replace("-", "\u2212")
    name, comp = wrap(rng, u, tex)
    out = [case("unicode_minus", comp, frac_plain(v), True, f"U+2212 minus ({name})")]
    name, comp = wrap(rng, u, tex)
    out.append(case("unicode_minus", comp, frac_plain(-v), False, f"U+2212 minus vs positive reference ({name})"))
    name, comp = wrap(rng, frac_plain(-v), frac_latex(-v))
    out.append(case("unicode_minus", comp, frac_plain(v).replace("-", "\u2212"), False,
                    f"positive vs U+2212 reference ({name})"))
    return out


def _var(rng):
    return rng.choice(["x", "x", "t", "y", "n"])


def _or_forms(x, a, b):
    return [f"{x} = {a} or {x} = {b}", f"{x}={a} or {x}={b}", f"{a} or {b}", f"{x} = {a} \\text{{ or }} {x} = {b}",
            f"{x} = {a}, {x} = {b}", f"{x} = {a} and {x} = {b}"]


def cat_or_set(rng):
    r1, r2 = rng.sample(range(-12, 13), 2)
    x = _var(rng)
    lo, hi = min(r1, r2), max(r1, r2)
    refs = [f"\\{{{lo}, {hi}\\}}", f"{lo}, {hi}", f"{{{lo},{hi}}}"]
    out = []
    k = rng.randrange(6)
    f = _or_forms(x, r1, r2)[k]
    name, comp = wrap(rng, f, f, kinds={"stated", "stated_latex", "boxed", "boxed_bare", "answer_colon_latex",
                                        "chatter", "bold"})
    if rng.random() < 0.3:
        comp = f"So ${x}={r1}$ or ${x}={r2}$."
        name = "two inline segments"
    out.append(case("or_set", comp, rng.choice(refs), True, f"roots joined by or/and ({name})"))
    bad = r2 + rng.choice([-1, 1])
    if bad == r1:
        bad = r2 + 2
    f = _or_forms(x, r1, bad)[rng.randrange(4)]
    name, comp = wrap(rng, f, f, kinds={"stated", "stated_latex", "boxed", "boxed_bare"})
    out.append(case("or_set", comp, rng.choice(refs), False, f"one root off ({name})"))
    name, comp = wrap(rng, f"{x} = {r1}", f"{x} = {r1}", kinds={"stated", "boxed"})
    out.append(case("or_set", comp, rng.choice(refs[:1] + refs[2:]), False, f"a root missing ({name})"))
    return out


def _interval(lo, lc, hi, hc):
    a = "-\\infty" if lo is None else str(lo)
    b = "\\infty" if hi is None else str(hi)
    return ("[" if lc else "(") + f"{a}, {b}" + ("]" if hc else ")")


def _ineq(lo, lc, hi, hc, x, style):
    le = {"tex": ("\\le", "<"), "texq": ("\\leq", "<"), "uni": ("\u2264", "<")}[style]
    ge = {"tex": ("\\ge", ">"), "texq": ("\\geq", ">"), "uni": ("\u2265", ">")}[style]
    if lo is not None and hi is not None:
        return f"{lo} {le[0] if lc else le[1]} {x} {le[0] if hc else le[1]} {hi}"
    if lo is not None:
        return f"{x} {ge[0] if lc else ge[1]} {lo}"
    return f"{x} {le[0] if hc else le[1]} {hi}"


def cat_interval(rng):
    out = []
    lo, hi = sorted(rng.sample(range(-10, 11), 2))
    lc, hc = rng.random() < 0.5, rng.random() < 0.5
    shape = rng.choice(["both", "both", "lo", "hi"])
    if shape == "lo":
        hi, hc = None, False
    if shape == "hi":
        lo, lc = None, False
    x = _var(rng)
    style = rng.choice(["tex", "texq", "uni"])
    ineq = _ineq(lo, lc, hi, hc, x, style)
    iv = _interval(lo, lc, hi, hc)
    name, comp = wrap(rng, ineq, ineq,
                      kinds={"stated_latex", "boxed", "boxed_bare", "answer_colon_latex", "boxed_display"})
    out.append(case("interval:inequality_vs_interval", comp, iv, True, f"inequality {style} vs interval ({name})"))
    name, comp = wrap(rng, iv, iv, kinds={"stated_latex", "boxed", "boxed_bare", "answer_colon_latex"})
    out.append(case("interval:interval_vs_inequality", comp, ineq.replace("\u2264", "\\le").replace("\u2265", "\\ge"),
                    True, f"interval vs inequality reference ({name})"))
    # near misses: an endpoint's closedness flipped, an endpoint moved
    if lo is not None and rng.random() < 0.5:
        bad = _ineq(lo, not lc, hi, hc, x, style)
        why = "lower endpoint open/closed flipped"
    elif hi is not None:
        bad = _ineq(lo, lc, hi, not hc, x, style)
        why = "upper endpoint open/closed flipped"
    else:
        bad = _ineq(lo, not lc, hi, hc, x, style)
        why = "lower endpoint open/closed flipped"
    name, comp = wrap(rng, bad, bad, kinds={"stated_latex", "boxed", "boxed_bare"})
    out.append(case("interval:near_miss", comp, iv, False, f"{why} ({name})"))
    lo2 = None if lo is None else lo - 1
    hi2 = None if hi is None else hi + rng.choice([0, 1])
    if lo2 is None:
        hi2 = hi + 1
    bad = _ineq(lo2, lc, hi2, hc, x, style)
    name, comp = wrap(rng, bad, bad, kinds={"stated_latex", "boxed", "boxed_bare"})
    out.append(case("interval:near_miss", comp, iv, False, f"endpoint moved ({name})"))
    return out


UNITS_LATEX = ["\\text{ m}^2", "\\text{ cm}", "\\,\\text{kg}", "\\ \\text{m}", "\\text{ cm}^3", "\\mathrm{~m/s}",
               "\\text{ square units}", "\\text{ dollars}", "\\,\\mathrm{km}", " \\text{units}^2"]
UNITS_PLAIN = ["cm", "m^2", "square feet", "cm²", "km/h", "apples", "units", "sq ft", "inches"]


def cat_units(rng):
    n = rng.choice([rng.randint(2, 999), Fraction(rng.randint(1, 999), 10)])
    s = decimal(Fraction(n))
    u = rng.choice(UNITS_LATEX)
    out = []
    name, comp = wrap(rng, f"${s}{u}$" if rng.random() < 0.5 else f"{s} {rng.choice(UNITS_PLAIN)}", f"{s}{u}")
    out.append(case("units", comp, s, True, f"number with a unit ({name})"))
    m = Fraction(n) + rng.choice([1, -1, 10])
    name, comp = wrap(rng, f"${decimal(m)}{u}$", f"{decimal(m)}{u}")
    out.append(case("units", comp, s, False, f"other number with a unit ({name})"))
    scale = rng.choice([("thousand", 1000), ("million", 10 ** 6)])
    k = rng.randint(2, 90)
    name, comp = wrap(rng, f"{k} {scale[0]}", f"{k} \\text{{ {scale[0]}}}", kinds={"stated", "answer_colon", "bold"})
    out.append(case("units:scale_word", comp, str(k), False, f"'{scale[0]}' multiplies ({name})"))
    out.append(case("units:scale_word", comp, str(k * scale[1]), True, f"'{scale[0]}' multiplies ({name})"))
    return out


def repeating(v: Fraction) -> tuple[str, str] | None:
    """(non-repeating digits after the point, repeating block) of a non-terminating fraction in [0,1)."""
    rems, digits, r = {}, [], v.numerator % v.denominator
    while r and r not in rems:
        rems[r] = len(digits)
        r *= 10
        digits.append(str(r // v.denominator))
        r %= v.denominator
    if not r:
        return None
    i = rems[r]
    return "".join(digits[:i]), "".join(digits[i:])


def cat_repeating(rng):
    q = rng.choice([3, 6, 7, 9, 11, 12, 15, 18, 22, 30, 33])
    p = rng.randint(1, q - 1)
    v = Fraction(p, q)
    while terminating(v):
        p = rng.randint(1, q - 1)
        v = Fraction(p, q)
    w = rng.choice([0, 0, 0, 1, 2])
    v += w
    nonrep, block = repeating(v - w)
    tex = f"{w}.{nonrep}\\overline{{{block}}}"
    out = []
    name, comp = wrap(rng, f"${tex}$", tex)
    out.append(case("repeating", comp, rng.choice([frac_plain(v), frac_latex(v)]), True, f"\\overline ({name})"))
    dots = f"{w}.{nonrep}{block * max(3, 6 // len(block))}..."
    name, comp = wrap(rng, dots, dots, kinds={"stated", "answer_colon", "bold", "chatter"})
    out.append(case("repeating:dots", comp, frac_plain(v), True, f"repeating block with ... ({name})"))
    rounded = f"{w}.{nonrep}{block * 2}"[:w // 10 + 6]
    name, comp = wrap(rng, rounded, rounded)
    out.append(case("repeating", comp, frac_plain(v), Fraction(rounded) == v, f"rounded/truncated decimal ({name})"))
    wrong = v + Fraction(1, 10 ** (len(nonrep) + 1))
    name, comp = wrap(rng, f"${tex}$", tex)
    out.append(case("repeating", comp, frac_plain(wrong), False, f"\\overline vs a nearby fraction ({name})"))
    return out


def cat_infinity(rng):
    sign = rng.choice([1, -1])
    forms = ["\\infty", "\u221e", "+\\infty", "\\infty"]
    f = rng.choice(forms)
    if sign < 0:
        f = "-" + f.lstrip("+")
    plain = f if "\\" not in f else f"${f}$"
    ref = rng.choice(["\\infty", "\u221e", "oo", "\\infty"])
    ref = ref if sign > 0 else "-" + ref
    name, comp = wrap(rng, plain, f)
    out = [case("infinity", comp, ref, True, f"{f} vs {ref} ({name})")]
    g = f.lstrip("-+") if sign < 0 else "-" + f.lstrip("+")
    name, comp = wrap(rng, g if "\\" not in g else f"${g}$", g)
    out.append(case("infinity", comp, ref, False, f"infinity sign flipped ({name})"))
    name, comp = wrap(rng, str(rng.randint(0, 1000)), None)
    out.append(case("infinity", comp, ref, False, f"finite vs infinity ({name})"))
    return out


def cat_choice(rng):
    letters = "ABCDE"
    k = rng.randrange(5)
    L, val = letters[k], rng.randint(1, 300)
    forms = [f"({L}) {val}", f"{L}) {val}", f"({L})", f"{L}", f"\\text{{({L})}} {val}", f"\\textbf{{({L})}}",
             f"{L}. {val}", f"({L}) ${val}$"]
    f = rng.choice(forms)
    out = []
    name, comp = wrap(rng, f, f, kinds={"stated", "boxed", "boxed_bare", "answer_colon", "bold", "stated_final"})
    out.append(case("choice:letter_reference", comp, rng.choice([L, f"({L})", f"\\text{{({L})}}"]), True,
                    f"choice '{f}' vs its letter ({name})"))
    other = letters[(k + rng.randint(1, 4)) % 5]
    out.append(case("choice:letter_reference", comp, rng.choice([other, f"({other})"]), False,
                    f"choice '{f}' vs another letter ({name})"))
    fv = rng.choice([g for g in forms if str(val) in g])
    name, comp = wrap(rng, fv, fv, kinds={"stated", "boxed", "answer_colon", "bold"})
    ref = rng.choice([str(val), f"({L}) {val}", f"{L}) {val}"])
    out.append(case("choice:value_reference", comp, ref, True, f"choice with its value vs '{ref}' ({name})"))
    bad = fv.replace(str(val), str(val + rng.choice([-1, 1, 10])))
    out.append(case("choice:value_reference", wrap(rng, bad, bad, kinds={"stated", "boxed"})[1], str(val), False,
                    "choice with another value"))
    return out


def cat_yes_no(rng):
    ans = rng.choice(["Yes", "No"])
    other = "No" if ans == "Yes" else "Yes"
    reason = rng.choice(["", ", because the sum is even", ". The product is divisible by 3", ", since 7 is prime"])
    f = rng.choice([ans, ans.lower(), ans.upper(), f"\\text{{{ans}}}", f"**{ans}**"])
    out = []
    name, comp = wrap(rng, f + reason, f"\\text{{{ans}}}", kinds={"stated", "boxed", "boxed_bare", "answer_colon",
                                                                  "bold", "stated_final", "bare"})
    ref = rng.choice([ans, ans.lower(), f"\\text{{{ans}}}"])
    out.append(case("yes_no", comp, ref, True, f"yes/no ({name})"))
    out.append(case("yes_no", comp, rng.choice([other, other.lower()]), False, f"yes/no, the other one ({name})"))
    return out


def cat_empty(rng):
    forms_plain = ["no solution", "There is no solution", "no real solutions", "No solutions"]
    forms_tex = ["\\emptyset", "\\varnothing", "\u2205", "\\{\\}"]
    if rng.random() < 0.5:
        f = rng.choice(forms_plain)
        name, comp = wrap(rng, f, f"\\text{{{f}}}", kinds={"stated", "answer_colon", "bold", "boxed", "bare"})
    else:
        f = rng.choice(forms_tex)
        name, comp = wrap(rng, f if f == "\u2205" else f"${f}$", f)
    ref = rng.choice(["\\emptyset", "\u2205", "no solution", "\\varnothing", "No solution"])
    out = [case("no_solution", comp, ref, True, f"'{f}' vs '{ref}' ({name})")]
    n = rng.randint(-9, 9)
    out.append(case("no_solution", comp, str(n), False, f"'{f}' vs a number ({name})"))
    name, comp = wrap(rng, str(n), None)
    out.append(case("no_solution", comp, ref, False, f"a number vs '{ref}' ({name})"))
    return out


def cat_number_formats(rng):
    """Thousands separators, trailing period, percent, degrees, scientific notation, fractions vs
    decimals, negative zero, signs."""
    out = []
    kind = rng.choice(["thousands", "percent", "degrees", "sci", "frac_dec", "neg_zero", "sign", "swapped"])
    if kind == "thousands":
        n = rng.randint(1000, 9_999_999) * rng.choice([1, 1, -1])
        f = rng.choice([thousands(n), thousands(n).replace(",", "{,}"), thousands(n).replace(",", "\\,")])
        name, comp = wrap(rng, f, f)
        out.append(case("format:thousands", comp, rng.choice([str(n), thousands(n)]), True, f"separators ({name})"))
        m = n * 10 if rng.random() < 0.5 else n + 1
        name, comp = wrap(rng, thousands(m), thousands(m))
        out.append(case("format:thousands", comp, str(n), False, f"separators, other value ({name})"))
    elif kind == "percent":
        p = rng.randint(1, 99)
        f, t = rng.choice([(f"{p}%", f"{p}\\%"), (f"{p} percent", f"{p}\\%")])
        name, comp = wrap(rng, f, t)
        out.append(case("format:percent", comp, rng.choice([f"{p}%", f"{p}\\%", decimal(Fraction(p, 100))]), True,
                        f"percent ({name})"))
        out.append(case("format:percent", comp, rng.choice([f"{p + 1}%", decimal(Fraction(p, 10))]), False,
                        f"percent, other value ({name})"))
    elif kind == "degrees":
        d = rng.choice([30, 45, 60, 90, 120, 135, 150, 72, 108, 36])
        f, t = rng.choice([(f"{d}°", f"{d}^\\circ"), (f"{d} degrees", f"{d}^{{\\circ}}"),
                           (f"${d}^\\circ$", f"{d}^\\circ")])
        name, comp = wrap(rng, f, t)
        out.append(case("format:degrees", comp, rng.choice([str(d), f"{d}^\\circ", f"{d}°"]), True,
                        f"degrees ({name})"))
        out.append(case("format:degrees", comp, str(180 - d if d != 90 else 45), False,
                        f"degrees, other angle ({name})"))
    elif kind == "sci":
        m, k = rng.randint(11, 99), rng.randint(-6, 9)
        v = Fraction(m, 10) * Fraction(10) ** k
        mant = f"{m // 10}.{m % 10}"
        f, t = rng.choice([(f"{mant} × 10^{k}", f"{mant} \\times 10^{{{k}}}"),
                           (f"{mant}e{k}", f"{mant} \\cdot 10^{{{k}}}")])
        name, comp = wrap(rng, f, t)
        out.append(case("format:scientific", comp, decimal(v), True, f"scientific ({name})"))
        name, comp = wrap(rng, f"{mant} × 10^{k + 1}", f"{mant} \\times 10^{{{k + 1}}}")
        out.append(case("format:scientific", comp, decimal(v), False, f"scientific, exponent off ({name})"))
    elif kind == "frac_dec":
        q = rng.choice([2, 4, 5, 8, 20, 25])
        p = rng.randint(1, 3 * q)
        v = Fraction(p, q)
        if rng.random() < 0.5:
            name, comp = wrap(rng, decimal(v), decimal(v))
            ref = rng.choice([frac_plain(v), frac_latex(v)])
        else:
            st = rng.choice(["frac", "dfrac", "short"])
            name, comp = wrap(rng, frac_plain(v), frac_latex(v, st))
            ref = decimal(v)
        out.append(case("format:fraction_decimal", comp, ref, True, f"fraction vs decimal ({name})"))
    elif kind == "neg_zero":
        f = rng.choice(["-0", "-0.0", "−0", "-0.00"])
        name, comp = wrap(rng, f, f)
        out.append(case("format:negative_zero", comp, rng.choice(["0", "0.0"]), True, f"negative zero ({name})"))
        name, comp = wrap(rng, "0", "0")
        out.append(case("format:negative_zero", comp, "-0", True, f"zero vs -0 reference ({name})"))
        out.append(case("format:negative_zero", wrap(rng, "-1", "-1")[1], "0", False, "-1 vs 0"))
    elif kind == "sign":
        v = Fraction(rng.randint(1, 500), rng.choice([1, 1, 2, 3, 4]))
        name, comp = wrap(rng, frac_plain(-v), frac_latex(-v))
        out.append(case("format:sign", comp, frac_plain(v), False, f"off by a sign ({name})"))
        name, comp = wrap(rng, frac_plain(v), frac_latex(v))
        out.append(case("format:sign", comp, "-" + frac_plain(v), False, f"off by a sign ({name})"))
    else:
        p, q = rng.sample(range(1, 13), 2)
        v = Fraction(p, q)
        if v.denominator == 1 or v.numerator == 1 and v.denominator == 1:
            return out
        inv = 1 / v
        name, comp = wrap(rng, frac_plain(inv), frac_latex(inv))
        out.append(case("format:swapped_fraction", comp, rng.choice([frac_plain(v), frac_latex(v)]), inv == v,
                        f"swapped fraction ({name})"))
    return out


def cat_several_boxed(rng):
    a, b = rng.sample(range(-50, 200), 2)
    comp = rng.choice([
        f"A first attempt gives $\\boxed{{{a}}}$, but that double counts. "
        f"Correcting it, the answer is $\\boxed{{{b}}}$.",
        f"Case 1 leads to \\boxed{{{a}}}. Re-checking case 2 more carefully, the final answer is \\boxed{{{b}}}.",
        f"$\\boxed{{{a}}}$ was my first guess.\n\nOn reflection the final answer is\n$$\\boxed{{{b}}}$$",
    ])
    return [case("several_boxed", comp, str(b), True, "the last box"),
            case("several_boxed", comp, str(a), False, "an earlier, corrected box")]


CHATTER = [
    "Let me double-check: {e}, so this is consistent.",
    "To verify: {e}. Good.",
    "Let me double-check by plugging it back in: {e}. Yes, the answer is correct.",
    "I should double check. {e}. Everything matches.",
]


def cat_chatter(rng):
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    s = a + b
    e = rng.choice([f"{a} + {b} = {s}", f"{s} - {b} = {a}", f"{s} - {a} = {b}"])
    tail = rng.choice(CHATTER).format(e=e)
    lead = rng.choice([f"The answer is {s}.", f"So the total is ${s}$.", f"Answer: {s}",
                       f"Thus the answer is **{s}**."])
    comp = f"Adding {a} and {b}. {lead} {tail}"
    return [case("chatter", comp, str(s), True, "answer then a check"),
            case("chatter", comp, str(s + rng.choice([-1, 1])), False, "answer then a check, other reference")]


def cat_text_around(rng):
    v = rng.randint(-300, 3000)
    comp = rng.choice([
        f"We have computed everything above. Hence, the number of ways is {v}.",
        f"Putting the pieces together gives a final count of $\\boxed{{{v}}}$ ways, as required.",
        f"Let's compute step by step.\n3 * 4 = 12\n12 + 5 = 17\nFinally, the answer is {v} units.",
        f"Thus, the answer to the question is: {v}",
        f"In conclusion, $x = {v}$ satisfies all conditions, so the answer is $x = {v}$.",
    ])
    return [case("text_around", comp, str(v), True, "answer inside prose"),
            case("text_around", comp, str(v + rng.choice([-2, 1, 100])), False, "answer inside prose, other reference")]


def cat_no_answer(rng):
    comp = rng.choice([
        "Let me think about this problem step by step. First, we need to understand what is being asked.",
        "I'm not sure how to approach this problem.",
        "We set up the equation and solve for the unknown, then check the result against the constraints.",
        "To solve this, consider the possible cases and count each one carefully.",
    ])
    return [case("no_answer", comp, str(rng.randint(1, 100)), False, "no answer in the text")]


CATEGORIES = [cat_mixed, cat_unicode_minus, cat_or_set, cat_interval, cat_units, cat_repeating, cat_infinity,
              cat_choice, cat_yes_no, cat_empty, cat_number_formats, cat_several_boxed, cat_chatter, cat_text_around,
              cat_no_answer]


def generate(seed: int, n: int = 40) -> list[dict]:
    """n draws per category (a draw makes one to six cases); deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for cat in CATEGORIES:
        for _ in range(n if cat is not cat_number_formats else 8 * n):
            out += cat(rng)
    seen, uniq = set(), []
    for c in out:
        key = (c["completion"], c["reference"])
        if key not in seen:
            seen.add(key)
            uniq.append({**c, "id": len(uniq), "seed": seed})
    return uniq


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args()
    for c in generate(a.seed, a.n):
        print(json.dumps(c))


if __name__ == "__main__":
    main()
