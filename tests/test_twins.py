"""Twin decontamination: renamed and reordered copies of a problem are caught, other numbers or
other operations are not; measured on generated problems renamed with Faker's names and words."""
import random
import re

import pyarrow as pa
import pytest

from filters.decontaminate import Decontaminator
from filters.twins import TwinIndex, canonical
from schemas.engine.stage import DROP
from synth.problems import ITEMS, NAMES, word_problems

BASE = "Ava has 12 apples. Ava gets 5 more apples. Ava keeps only 1/2 of the apples. How many apples does Ava have now?"


def test_renamed_and_reordered_twins_are_caught():
    index = TwinIndex([("p0", BASE)])
    renamed = BASE.replace("Ava", "Zoltán Kovács").replace("apples", "spark plugs")
    reordered = ("Zed keeps only 1/2 of the gizmos. Zed has 12 gizmos. How many gizmos does Zed have now? "
                 "Zed gets 5 more gizmos.")
    assert index.twin_of(renamed) == "p0"
    assert index.twin_of(reordered) == "p0"
    assert index.twin_of(BASE.upper()) == "p0"          # case is no disguise
    assert index.twin_of("  " + BASE.replace(". ", ".\n")) == "p0"  # nor line breaks


@pytest.mark.parametrize("other", [
    BASE.replace("12", "13"),                              # another start
    BASE.replace("5 more", "6 more"),                      # another operand
    BASE.replace("gets 5 more", "gives away 5"),           # another operation, same numbers
    BASE.replace("1/2", "1/3"),                            # another fraction
    BASE.replace(" Ava keeps only 1/2 of the apples.", ""),  # one step fewer
])
def test_different_problems_are_not_twins(other):
    assert TwinIndex([("p0", BASE)]).twin_of(other) is None


def _truth(p: dict) -> str:
    """Ground truth from the generator's own vocabulary: the text with its name and item blanked."""
    text = p["problem"]
    for w in NAMES + ITEMS:
        text = re.sub(rf"\b{w}\b", "_", text)
    return text


def test_faker_renamed_twins_recall_and_false_twin_rate():
    faker = pytest.importorskip("faker")
    fakes = [faker.Faker(loc) for loc in ("en_US", "de_DE", "fr_FR", "tr_TR")]
    for i, f in enumerate(fakes):
        f.seed_instance(i)
    problems = word_problems(3000, seed=11)
    rng = random.Random(0)
    caught = 0
    index = TwinIndex((str(i), p["problem"]) for i, p in enumerate(problems))
    for p in problems:
        f = rng.choice(fakes)
        name, item = f.first_name(), f.word() + "s"
        text = p["problem"]
        for w in NAMES:
            text = re.sub(rf"\b{w}\b", name, text)
        for w in ITEMS:
            text = re.sub(rf"\b{w}\b", item, text)
        sentences = re.split(r"(?<=[.?])\s+", text)
        rng.shuffle(sentences)
        caught += index.twin_of(" ".join(sentences)) is not None
    # recall on 3,000 disguised twins; the one miss here renames the item to an operation word the
    # problem also uses as an operation ("buys 4 packs of buys"): the form cannot tell those apart
    assert caught >= 0.999 * len(problems), caught
    # false twins: problems whose keys match though their blanked texts differ; all of them are the
    # same steps in another order (the key is order-free by design): 36 of 2,546 here
    by_key: dict[str, set[str]] = {}
    for p in problems:
        by_key.setdefault(canonical(p["problem"]), set()).add(_truth(p))
    truths = {_truth(p) for p in problems}
    false_joins = sum(len(v) - 1 for v in by_key.values())
    assert false_joins / len(truths) < 0.02, (false_joins, len(truths))


def test_decontaminator_twins_mode_rejects_renamed_rows(tmp_path):
    bench = tmp_path / "heldout.jsonl"
    bench.write_text('{"problem": "%s", "answer": "8"}\n' % BASE)
    other = BASE.replace("12", "14").replace("5", "7").replace("1/2", "1/3")  # no 13-gram in common
    rows = pa.table({"problem": [BASE.replace("Ava", "Bo"), other, BASE]})
    plain = Decontaminator(benchmarks=[str(bench)], n=13, column="problem")
    twins = Decontaminator(benchmarks=[str(bench)], n=13, column="problem", twins=True)
    kept = lambda out: [t for t, d in zip(out.column("problem").to_pylist(), out.column(DROP).to_pylist())
                        if d is None]
    kept_plain, kept_twins = kept(plain(rows)), kept(twins(rows))
    assert BASE.replace("Ava", "Bo") in kept_plain          # 13-grams miss the renamed copy ...
    assert kept_twins == [other]         # ... the canonical form does not


def test_twins_only_mode_ignores_shared_template_ngrams(tmp_path):
    bench = tmp_path / "heldout.jsonl"
    bench.write_text('{"problem": "%s", "answer": "8"}\n' % BASE)
    # same template and names, other numbers: 13-grams shared, not a twin
    other = BASE.replace("12", "19").replace("5 more", "8 more")
    decon = Decontaminator(benchmarks=[str(bench)], n=0, column="problem", twins=True)
    out = decon(pa.table({"problem": [other, BASE]}))
    assert out.column(DROP).to_pylist() == [None, "contaminated"]
