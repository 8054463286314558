"""The answer verifier: the answer forms that were misjudged (regressions), hostile input in
bounded time, and the floor on the broad labeled set (`bench/bench_verify.py`)."""
import contextlib
import gzip
import json
import os
import signal
import time

import pytest

from synth.number_words import words_to_number
from synth.verify import RuleVerifier, as_number, extract_answer, number_key

DATA = os.path.join(os.path.dirname(__file__), "data", "verify_eval.jsonl.gz")


@pytest.mark.parametrize("completion,reference,verdict", [
    # a bare LaTeX / algebraic final answer without \boxed{} (was reduced to its last number)
    ("Therefore the probability is $\\frac{3}{4}$", "3/4", "correct"),
    ("Therefore the probability is $\\dfrac{6}{8}$.", "0.75", "correct"),
    ("Therefore the probability is $\\frac{3}{5}$", "3/4", "incorrect"),
    ("Simplifying, we get $2\\sqrt{3}$", "sqrt(12)", "correct"),
    ("Simplifying, we get $2\\sqrt{2}$", "sqrt(12)", "incorrect"),
    ("Factoring, (x+1)(x-2)", "x**2 - x - 2", "correct"),
    ("Factoring, $(x-1)(x-2)$", "x**2 - x - 2", "incorrect"),
    ("The solutions are $\\{2, 1\\}$", "\\{1, 2\\}", "correct"),
    ("The solutions are $\\{1, 3\\}$", "\\{1, 2\\}", "incorrect"),
    ("So $x \\in [1, 2)$", "[1, 2)", "correct"),
    ("So $x \\in (1, 2)$", "[1, 2)", "incorrect"),
    ("The answer is $3.2 \\times 10^{5}$.", "320000", "correct"),
    ("The answer is 3.2e5.", "320000", "correct"),
    ("The answer is $3.2 \\times 10^{6}$.", "320000", "incorrect"),
    # a negative number with a space after the sign
    ("The answer is - 5.", "-5", "correct"),
    ("So x = - 5", "-5", "correct"),
    ("The answer is - 5.", "5", "incorrect"),
    # answers in words
    ("The answer is twelve.", "12", "correct"),
    ("The answer is three quarters.", "0.75", "correct"),
    ("The answer is minus five.", "-5", "correct"),
    ("The answer is one hundred and five.", "105", "correct"),
    ("The answer is thirteen.", "12", "incorrect"),
    # self-correction: the last stated answer wins
    ("The answer is 5; actually it is 7", "7", "correct"),
    ("The answer is 5; actually it is 7", "5", "incorrect"),
    ("The answer is 5. Wait, I made a mistake: actually the answer is 7.", "7", "correct"),
    # several boxes joined by "and" are one list answer
    ("The integers are \\boxed{-2} and \\boxed{1}.", "-2, 1", "correct"),
    ("The integers are \\boxed{-2} and \\boxed{1}.", "-2, 2", "incorrect"),
    # prose stays undecided; a wrong prose answer is not "correct"
    ("The answer is banana.", "apple", "undecided"),
    ("Final Answer: The volume of $ABCD$ is 120. I hope it is correct.", "120", "correct"),
    # the same numbers in another order: a sorted sequence or a set? Not decidable without the question
    ("The answer is 3, 2, 1.", "1, 2, 3", "undecided"),
    ("The answer is 1, 2, 4.", "1, 2, 3", "incorrect"),
    # near misses found on the evaluation set
    ("The answer is $a \\div b$.", "a + b", "incorrect"),     # "a" is an article, not the number one
    ("The answer is $a \\; b$.", "a*b", "correct"),           # "\\;" is a LaTeX space, not a sentence end
    ("The answer is 5 or 6.", "5", "undecided"),
    ("The answer is the number of marbles Priya has now, which is 18.", "18", "correct"),
    ("The answer is that there are 5 apples left.", "5", "correct"),
    ("The answer is not 5.", "5", "undecided"),
    # references in sympy / Python syntax (DeepMind's form): as LaTeX, log(x) would read l*o*g*x
    ("The answer is $\\log_2 x$.", "log(x)/log(2)", "correct"),
    ("The answer is $\\log_2 x$.", "log(x)/log(3)", "incorrect"),
    ("The answer is $\\binom{n}{k}$.", "binomial(n, k)", "correct"),
    ("The answer is $(x + 1)!$.", "factorial(x + 1)", "correct"),
    # matrices and lists of equations go to math-verify whole
    ("Here is a zero matrix: $ \\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix} $",
     "\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}", "correct"),
    ("$$\\boxed{a_{37} = 19, \\quad a_3 = 2}$$", "a_3 = 2, a_{37} = 19", "correct"),
    # decimal commas and percent references
    ("1,22", "1.22", "correct"),
    ("1,000", "1000", "correct"),
    ("28", "28%", "correct"),
    ("2.8", "28%", "incorrect"),               # a hedge
    ("The answer is $(1, +\\infty)$.", "(1, +\\infty)", "correct"),  # "\\infty" is not "\\in"
])
def test_answer_forms_that_were_misjudged(verifier, completion, reference, verdict):
    assert verifier(completion, reference).verdict == verdict


@pytest.mark.parametrize("salad", [
    "Or candidate trouble listen ok paper training light nearly court. Must near however technology 42",
    "Scientist provide ask serve opportunity feeling all tend list. 42",
    "AZYUK42A",
    "purple monkey dishwasher 42.",
    "Scientist provide ask serve opportunity feeling all tend list $42$.",
])
def test_word_salad_ending_in_the_right_number_is_not_an_answer(verifier, salad):
    v = verifier(salad, "42")   # no answer: undecided, for the judge (issue 27), never "correct"
    assert v.verdict == "undecided" and v.verifier.startswith("rule:no_answer") and v.extracted is None


# Issue 27: forms real model outputs use. Each case was misjudged before the fix (checked against
# the verifier at 51aebb5); the first group were wrong answers ACCEPTED.
ISSUE_27 = [
    # a mixed number is whole + fraction, never the digits joined ("3\\frac{1}{2}" was 31/2)
    ("The answer is $3\\frac{1}{2}$.", "15.5", "incorrect"),
    ("The answer is $3\\frac{1}{2}$.", "31/2", "incorrect"),
    ("\\boxed{3\\dfrac{1}{2}}", "31/2", "incorrect"),
    ("The answer is 31/2.", "3\\frac{1}{2}", "incorrect"),
    ("The answer is 3 1/2.", "31/2", "incorrect"),
    ("The answer is 79 million.", "79", "incorrect"),            # a scale word multiplies; it is no unit
    ("So $x=2$ or $x=3$.", "3", "undecided"),                    # both roots, not the last one (a hedge for "3")
    ("The answer is $x = 2$ or $x = 3$.", "3", "undecided"),
    # ... and the right forms they stand for
    ("The answer is $3\\frac{1}{2}$.", "7/2", "correct"),
    ("\\boxed{3\\dfrac{1}{2}}", "\\frac{7}{2}", "correct"),
    ("The answer is 3 1/2.", "7/2", "correct"),
    ("The answer is 7/2.", "3\\frac{1}{2}", "correct"),           # a mixed-number reference
    ("The answer is $\\frac{7}{2}$.", "3 1/2", "correct"),
    ("The answer is $-2\\frac{1}{3}$.", "-7/3", "correct"),
    ("The answer is $2\\frac{3}{2}$.", "7/2", "undecided"),       # improper: a mixed number or a product?
    # the Unicode minus
    ("\u22126", "-6", "correct"),
    # roots joined by "or" against a set
    ("The answer is x = 2 or x = 3.", "\\{2, 3\\}", "correct"),
    ("The answer is x = 3 or x = 2.", "2, 3", "correct"),
    ("So $x=2$ or $x=3$.", "\\{2, 3\\}", "correct"),
    ("\\boxed{x = 2 \\text{ or } x = 3}", "{2,3}", "correct"),
    ("The answer is y = 3 and y = -8.", "\\{-8, 3\\}", "correct"),
    ("\\boxed{8 or -6}", "\\{-5, 8\\}", "incorrect"),
    # inequalities against intervals
    ("The answer is $2 \\le x < 5$.", "[2, 5)", "correct"),
    ("\\boxed{x \\geq 3}", "[3, \\infty)", "correct"),
    ("So the answer is $t \u2264 5$.", "(-\\infty, 5]", "correct"),
    ("x < 1 or x > 2", "(-\\infty, 1) \\cup (2, \\infty)", "correct"),
    # units inside LaTeX, scale words, degrees
    ("The answer is 842 km/h.", "842", "correct"),
    ("The answer is 79 million.", "79000000", "correct"),
    ("After simplifying, the answer is 90 degrees, which is what we wanted.", "90", "correct"),
    # repeating decimals
    ("The answer is $0.\\overline{3}$.", "1/3", "correct"),
    ("\\boxed{1.1\\overline{6}}", "7/6", "correct"),
    ("The answer is 0.1666666....", "1/6", "correct"),
    ("**Answer:** 2.5333333...", "38/15", "correct"),
    # infinity
    ("The answer is \u221e.", "\\infty", "correct"),
    ("#### $\\infty$", "\u221e", "correct"),
    ("The answer is $606$.", "\u221e", "incorrect"),
    # a multiple-choice letter with its value
    ("The answer is (B) 12.", "B", "correct"),
    ("\\boxed{(B) 12}", "(B)", "correct"),
    ("\\boxed{B) 253}", "\\text{(B)}", "correct"),
    ("The answer is (B) 12.", "12", "correct"),
    ("The answer is C. 107.", "107", "correct"),
    ("The answer is (B).", "12", "undecided"),                    # the options are not known here
    # yes / no
    ("The answer is yes, it is possible.", "Yes", "correct"),
    ("The answer is yes, it is possible.", "No", "incorrect"),
    ("No, since 7 is prime.", "No", "correct"),
    # no solution
    ("There is no solution", "\\emptyset", "correct"),
    ("The answer is \u2205.", "no solution", "correct"),
    ("$\\boxed{\\varnothing}$", "\u2205", "correct"),
    ("\\boxed{8}", "no solution", "incorrect"),
    # an answer followed by a check
    ("The answer is 70. Let me double-check by plugging it back in: 70 - 19 = 51. Yes, the answer is correct.",
     "70", "correct"),
    ("Answer: 125 To verify: 125 - 60 = 65. Good.", "125", "correct"),
    ("Adding 96 and 68. So the total is $164$. To verify: 164 - 68 = 96. Good.", "164", "correct"),
    ("Adding 96 and 68. So the total is $164$. To verify: 164 - 68 = 96. Good.", "96", "incorrect"),
    # found while fixing: a variable or a constant after a number is no unit (both were ACCEPTED)
    ("The answer is $2 x$.", "2", "incorrect"),
    ("The answer is $2\\mathrm{e}^2$.", "2", "incorrect"),        # math-verify drops \\mathrm{e}^2 as a unit
    ("The answer is 5 hundredths.", "5", "undecided"),           # a fraction word is no unit either
    ("The answer is $2\\mathrm{e}^2$.", "2*exp(2)", "correct"),
    # no answer at all: undecided for the judge (it was "incorrect", and the judge never saw it)
    ("We set up the equation and solve for the 2 unknowns, then check each case.", "5", "undecided"),
]


# Near misses and forms that were already judged right (mostly by math-verify): kept so the fixes
# above do not loosen them.
ISSUE_27_GUARDS = [
    ("The answer is $-2\\frac{1}{3}$.", "-5/3", "incorrect"),     # -(2 + 1/3), not -2 + 1/3
    ("The answer is $3 \\tfrac12$.", "3.5", "correct"),
    ("The answer is $1\\frac{1}{2} + x$.", "x + 3/2", "correct"),  # inside a formula (math-verify)
    ("The answer is \u22127.", "-7", "correct"),
    ("The answer is \u22120.", "0", "correct"),
    ("The answer is x = 2 or x = 4.", "\\{2, 3\\}", "incorrect"),
    ("The answer is $2 \\le x < 5$.", "[2, 5]", "incorrect"),
    ("\\boxed{x > 3}", "[3, \\infty)", "incorrect"),
    ("\\boxed{[2, 5)}", "2 \\le x < 5", "correct"),
    ("The answer is $12 \\text{ m}^2$.", "12", "correct"),
    ("\\boxed{89.6\\,\\text{cm}^3}", "89.6", "correct"),
    ("The answer is $0.\\overline{3}$.", "3/10", "incorrect"),
    ("\\boxed{-\\infty}", "\\infty", "incorrect"),
    ("The answer is (B) 12.", "C", "incorrect"),
    ("The answer is (B) 13.", "12", "incorrect"),
    ("\\boxed{\\text{No}}", "no", "correct"),
    ("\\boxed{\\emptyset}", "3", "incorrect"),
    ("The answer is (B) x+1.", "(B) x+2", "incorrect"),          # the same letter, another value
    ("\\boxed{(1, 2] \\cup (2, 3)}", "(1, 3)", "correct"),          # a union is merged before comparing
    ("\\boxed{(1, 2) \\cup (2, 3)}", "(1, 3)", "incorrect"),
    ("The answer is (A) or (B).", "A", "undecided"),              # a hedge between choices
    # a check that goes on to a new result keeps the last result, not the one before "checking"
    ("We get $x = 5$. Let me double-check the boundary x = 0: it gives $f(0) = 3$, so the minimum is $3$.",
     "5", "incorrect"),
]

# The rules alone (no math-verify: the teacher filter and the held-out scoring run this way) now
# decide what only math-verify decided before, or nothing did.
ISSUE_27_RULES_ONLY = [
    ("The answer is $3 \\tfrac12$.", "3.5", "correct"),
    ("The answer is $3\\frac{1}{2}$.", "31/2", "incorrect"),
    ("The answer is \u22127.", "-7", "correct"),
    ("The answer is $12 \\text{ m}^2$.", "12", "correct"),
    ("\\boxed{89.6\\,\\text{cm}^3}", "89.6", "correct"),
    ("The answer is $30^\\circ$.", "30", "correct"),
    ("The answer is $0.\\overline{3}$.", "1/3", "correct"),
    ("\\boxed{x > 3}", "[3, \\infty)", "incorrect"),
    ("\\boxed{2 \\le x < 5}", "[2, 5)", "correct"),
    ("\\boxed{\\emptyset}", "3", "incorrect"),
    ("\\boxed{-\\infty}", "\\infty", "incorrect"),
]


@pytest.mark.parametrize("completion,reference,verdict", ISSUE_27 + ISSUE_27_GUARDS)
def test_issue_27_forms(verifier, completion, reference, verdict):
    assert verifier(completion, reference).verdict == verdict


@pytest.mark.parametrize("completion,reference,verdict", ISSUE_27_RULES_ONLY)
def test_issue_27_forms_with_the_rules_alone(completion, reference, verdict):
    assert RuleVerifier(use_math_verify=False)(completion, reference).verdict == verdict


def test_no_answer_is_undecided_unless_nothing_could_be_the_answer(verifier):
    v = verifier("Let me think about this problem step by step, in 3 parts.", "5")
    assert (v.verdict, v.verifier, v.extracted) == ("undecided", "rule:no_answer:none", None)
    # the judge sees it: CoTSampler sends every undecided sample to the judge
    assert verifier("I have no idea.", "5").verdict == "incorrect"      # no digit, number word or maths in it
    assert verifier("", "5").verdict == "incorrect"
    assert verifier("I have no idea.", "yes").verdict == "undecided"    # a word reference: the text may hold it
    assert verifier("Let me think about this in 3 parts", "5", truncated=True).verdict == "incorrect"


def test_the_judge_gets_the_undecided_no_answer_samples(tmp_path):
    import pyarrow as pa

    from synth.cot_sampling import CoTSampler
    from synth.generator_backends import Completion
    from synth.judge import Judgement

    class Gen:
        model_id = "stub"

        def generate(self, reqs):
            return [Completion("We split it into 3 cases and count each.", "stop", None, seconds=0.0) for _ in reqs]

    judged = []

    def judge(items):
        judged.extend(items)
        return [Judgement("incorrect", "judge", "p", "INCORRECT") for _ in items]
    sampler = CoTSampler.__new__(CoTSampler)
    sampler.gen, sampler.judge, sampler.verify = Gen(), judge, __import__("synth.verify").verify.RuleVerifier(
        use_math_verify=False)
    sampler.k, sampler.max_attempts, sampler.seed, sampler.system = 2, 1, 0, ""
    sampler.sampling = dict(temperature=0.8, top_p=0.95, max_tokens=64)
    out = sampler(pa.table({"problem": ["What is 2+3?"], "answer": ["5"]})).to_pylist()[0]
    assert len(judged) == 2 and judged[0][2] is None                     # the judge sees "(none)"
    assert {s["verdict"] for s in out["samples"]} == {"incorrect"} and out.get("drop_reason") is None


def test_a_solution_ending_in_its_result_still_counts_and_truncation_still_blocks_it(verifier):
    cut = "We have 12 apples, then 30 more, so 42"
    assert verifier(cut, "42").verdict == "correct"
    assert verifier(cut, "42", truncated=True).verdict == "incorrect"
    assert verifier("12 + 30 = 42", "42", truncated=True).verdict == "incorrect"
    assert verifier("42", "42").verdict == "correct"


def test_numbers_too_long_for_fraction_get_a_verdict(verifier):
    digits = "7" + "1234567890" * 1000          # 10,001 digits: beyond int()'s 4,300-digit limit
    assert verifier(f"The answer is {digits}.", digits).verdict == "correct"
    assert verifier(f"The answer is {digits[:-1]}8.", digits).verdict == "incorrect"
    assert verifier(f"\\boxed{{{digits}.500}}", f"{digits}.5").verdict == "correct"
    assert verifier(f"The answer is -{digits}.", digits).verdict == "incorrect"
    assert number_key("0" * 5000 + digits) == number_key(digits)


def test_python_syntax_reaches_sympy_only_when_it_is_plain_maths():
    from synth.verify import _python_syntax_latex
    assert _python_syntax_latex("2*x**2 + 3") == "2 x^{2} + 3"
    for hostile in ("__import__('os').system('true')", "().__class__", "exec(1)", "x.conjugate()", "open(1)",
                    "lambda: 1", "a" * 500 + "(1)"):
        assert _python_syntax_latex(hostile) is None, hostile


def test_number_words():
    assert words_to_number("two and a half") == as_number("5/2")
    assert words_to_number("zero point seven five") == as_number("0.75")
    assert words_to_number("one thousand, two hundred and thirty-four") == 1234
    for bad in ("one two", "twenty twelve", "three quarter", "no solution", "and", "a lot", "a", "a b"):
        assert words_to_number(bad) is None, bad


def test_extraction_order():
    assert extract_answer("3 then 4. \\boxed{7} The answer is 9") == ("7", "boxed")
    assert extract_answer("The answer is 9.\n#### 10")[0] == "10"      # the last stated answer
    assert extract_answer("only numbers 3 and 4") == (None, "none")    # no cue, no answer
    assert extract_answer("$x = 1/3 \\approx 0.33$")[0] == "1/3"
    assert extract_answer("The answer is $2x + y = 1$.")[0] == "2x + y = 1"  # an equation stays whole


ADVERSARIAL = {
    "letters": "a " * 16_000 + "1",
    "answer_spaces": "The answer is" + " " * 32_000,
    "answer_many": "answer: " * 4_000 + "x",
    "open_brace": "\\boxed{" * 4_000,
    "open_paren": "\\(" * 16_000 + "1",
    "dollars": "$" * 32_000 + "5",
    "digits_commas": "1," * 16_000 + "1",
    "digits": "9" * 32_000,
    "frac": "\\frac{" * 5_000 + "1",
    "text": "\\text{" * 5_000,
    "units": "5 " + "km " * 10_000,
    "spaced": "- " * 16_000 + "5",
    "equals": "x = " * 8_000 + "5",
    "words": "twenty " * 5_000,
    "empty_boxes": "\\boxed{}" * 4_000,
    "boxes": "\\boxed{1} and " * 2_000,
    "nested_boxes": "\\boxed{" * 2_000 + "}" * 2_000,
    "cues": "The answer is 5. " * 2_000,
    "dollar_pairs": "$1$ " * 8_000,
}


class _Runaway(Exception):
    pass


@contextlib.contextmanager
def _cpu_guard(seconds: float):
    """Fail, not hang, when a pattern backtracks without end: the regex engine checks signals,
    so the profiling timer interrupts it. CPU time, far above the ~1 s the test needs, so a
    loaded machine does not trip it."""
    def runaway(*_):
        raise _Runaway(f"over {seconds} CPU-s")
    old = signal.signal(signal.SIGPROF, runaway)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def _verify_everywhere(v, text):
    v(text, "5")
    v("The answer is " + text, "5")
    as_number(text)
    extract_answer(text + " so 42")


def _least_cpu(fn, repeats: int) -> float:
    """The least CPU time over a few runs: load and a collection in the middle add time, never
    take it away."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_hostile_answers_verify_in_linear_time(name):
    """A ratio of two sizes in one process, not a bound in seconds: 16 times the text (64 KB to
    1 MB) takes 6-17 times the CPU here (linear work, a fixed cost in some), 256 times quadratic work (one
    of these inputs once took 99 s at 32 KB). The first call pays the imports and compiles."""
    v = RuleVerifier(use_math_verify=False)   # only the in-process part: the child has its own limit
    text = ADVERSARIAL[name]
    with _cpu_guard(60):
        _verify_everywhere(v, text)
        small = _least_cpu(lambda: _verify_everywhere(v, text * 2), 5)
        large = _least_cpu(lambda: _verify_everywhere(v, text * 32), 2)
    assert large < 40 * max(small, 1e-3), (name, small, large)


def test_floor_on_the_broad_labeled_set():
    """The rules alone (no math-verify: fast) on the set `bench/bench_verify.py` reports: what
    they call correct is right; numeric classes are decided."""
    with gzip.open(DATA, "rt") as f:
        cases = [json.loads(line) for line in f]
    assert len(cases) > 3000
    v = RuleVerifier(use_math_verify=False)
    tp = fp = pos = 0
    for c in cases:
        verdict = v(c["completion"], c["reference"], truncated=c["truncated"]).verdict
        tp += verdict == "correct" and c["label"] == "correct"
        fp += verdict == "correct" and c["label"] != "correct"
        pos += c["label"] == "correct"
    assert tp / (tp + fp) >= 0.99
    assert tp / pos >= 0.6
