"""The answer verifier: the answer forms that were misjudged (regressions), hostile input in
bounded time, and the floor on the broad labeled set (`bench/bench_verify.py`)."""
import gzip
import json
import os
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
    assert verifier(salad, "42").verdict == "incorrect"


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


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("scale", [1, 32])   # ~32 KB and ~1 MB
def test_hostile_answers_verify_in_well_under_a_second(name, scale):
    v = RuleVerifier(use_math_verify=False)   # only the in-process part: the child has its own limit
    text = ADVERSARIAL[name] * scale
    t0 = time.process_time()
    v(text, "5")
    v("The answer is " + text, "5")
    as_number(text)
    extract_answer(text + " so 42")
    # 32 KB: well under a second (it took 99 s before). 1 MB: linear time allows ~32× that on a
    # loaded 2-core machine; anything quadratic would take minutes.
    assert time.process_time() - t0 < (0.5 if scale == 1 else 5.0), name


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
