"""Spoken forms (issue 27): is the spoken rewrite right, and does the written-form check catch it when not?

    python bench/bench_spoken_forms.py               # the working tree against HEAD~N's synth/spoken.py
    python bench/bench_spoken_forms.py --rev f7c03c4  # "before" = that revision's rewriter (git show)

The set: queries written by hand for the categories the issue names (dates, years, versions,
math, lists, units, names with digits), each with how a careful reader says it (several readings
where more than one is right, "and" ignored). `REJECT:ambiguous_date` means the right outcome is
that selection rejects the query. A rewrite is right when the rewriter's output, lower-cased with
punctuation and "and" dropped, equals one of the readings.

The check is measured ASR-free: a perfect ASR returns the spoken form itself, so `wer_written`
is `written_wer(query, spoken_form(query))`. False rejects: right rewrites with `wer_written`
above the threshold. Caught: wrong rewrites (old or new rewriter) above it.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SET = [  # (category, query, right readings)
    ("date", "Is the office open on 07/21/2023?", ["is the office open on july twenty first twenty twenty three"]),
    ("date", "What happened on 2001-09-11?", ["what happened on september eleventh two thousand one"]),
    ("date", "Is 14/03/2021 a Sunday?", ["is the fourteenth of march twenty twenty one a sunday"]),
    ("date", "Is 03/04/2021 a Monday?", ["REJECT:ambiguous_date"]),
    ("date", "Is 05/06/2024 a school day?", ["REJECT:ambiguous_date"]),
    ("date", "Did anything change on March 3, 2021?", ["did anything change on march third twenty twenty one"]),
    ("date", "We moved here on 5 June 2010.", ["we moved here on the fifth of june twenty ten"]),
    ("date", "Is 12/25/2024 a Wednesday?", ["is december twenty fifth twenty twenty four a wednesday"]),
    ("date", "The deadline is 31/01/2025, right?",
     ["the deadline is the thirty first of january twenty twenty five right"]),
    ("date", "What time is the meeting on Jan. 15, 2022?",
     ["what time is the meeting on january fifteenth twenty twenty two"]),
    ("date", "Was the contract signed on 2019-12-31?",
     ["was the contract signed on december thirty first twenty nineteen"]),
    ("date", "Is 06/06/2023 a holiday?", ["is june sixth twenty twenty three a holiday"]),
    ("year", "What happened in 1991, 1995 and 2003?",
     ["what happened in nineteen ninety one nineteen ninety five two thousand three"]),
    ("year", "Who won the World Cup in 1966 and 1970?",
     ["who won the world cup in nineteen sixty six nineteen seventy"]),
    ("year", "Since 1987 the firm has grown.", ["since nineteen eighty seven the firm has grown"]),
    ("year", "Between 1914 and 1918 the war raged.", ["between nineteen fourteen nineteen eighteen the war raged"]),
    ("year", "Compare the recessions of 1929, 1973 and 2008.",
     ["compare the recessions of nineteen twenty nine nineteen seventy three two thousand eight"]),
    ("year", "The population was 1500 in the village.",
     ["the population was one thousand five hundred in the village",
      "the population was fifteen hundred in the village"]),
    ("year", "Was the Magna Carta signed in 1215?", ["was the magna carta signed in twelve fifteen"]),
    ("year", "How much did gold change from 1980 to 2020?",
     ["how much did gold change from nineteen eighty to twenty twenty",
      "how much did gold change from nineteen eighty to two thousand twenty"]),
    ("year", "The bridge opened in 1937 and closed in 2011 for repairs.",
     ["the bridge opened in nineteen thirty seven closed in twenty eleven for repairs"]),
    ("year", "Rank the years 1848, 1905 and 1917 by importance.",
     ["rank the years eighteen forty eight nineteen oh five nineteen seventeen by importance"]),
    ("year", "Was music better in the 1990s?", ["was music better in the nineteen nineties"]),
    ("version", "Upgrade to Python 3.11 today.", ["upgrade to python three point eleven today"]),
    ("version", "Is HTTP/2 faster than HTTP/1.1?", ["is h t t p two faster than h t t p one point one"]),
    ("version", "Should I install version 2.0.1 first?", ["should i install version two point zero point one first",
                                                          "should i install version two point oh point one first"]),
    ("version", "Does Windows 11 support my printer?", ["does windows eleven support my printer"]),
    ("version", "What changed between Django 4.2 and 5.0?",
     ["what changed between django four point two five point zero",
      "what changed between django four point two five point oh"]),
    ("version", "Can Ubuntu 22.04 run this game?", ["can ubuntu twenty two point oh four run this game"]),
    ("version", "Is iOS 17.2 out yet?", ["is ios seventeen point two out yet"]),
    ("version", "Does the PS/2 port still work?", ["does the p s two port still work"]),
    ("version", "Is USB 3.0 faster than USB 2.0?", ["is usb three point zero faster than usb two point zero",
                                                    "is usb three point oh faster than usb two point oh"]),
    ("math", "What does E = mc² mean?", ["what does e equals m c squared mean"]),
    ("math", "Solve 3y − 7 = 11 for y.", ["solve three y minus seven equals eleven for y"]),
    ("math", "What is 3² + 4²?", ["what is three squared plus four squared"]),
    ("math", "What is 17 + 25?", ["what is seventeen plus twenty five"]),
    ("math", "Is 5 − 8 negative?", ["is five minus eight negative"]),
    ("math", "What is 2x + 1 when x is 4?", ["what is two x plus one when x is four"]),
    ("math", "How much is 12 × 3?", ["how much is twelve times three"]),
    ("math", "Is -19/6 less than -2?", ["is minus nineteen sixths less than minus two"]),
    ("math", "Why is a² + b² = c² true for right triangles?",
     ["why is a squared plus b squared equals c squared true for right triangles"]),
    ("math", "What is 10 - 4?", ["what is ten minus four"]),
    ("math", "Is 2a − b positive when a is 3?", ["is two a minus b positive when a is three"]),
    ("list", "Compare: 1. speed 2. cost 3. safety", ["compare first speed second cost third safety"]),
    ("list", "Which is better: 1) tea 2) coffee 3) juice?", ["which is better first tea second coffee third juice"]),
    ("list", "Rank these cities 1. Paris 2. Rome 3. Berlin by size.",
     ["rank these cities first paris second rome third berlin by size"]),
    ("list", "Steps:\n1. boil water\n2. add pasta\n3. stir", ["steps first boil water second add pasta third stir"]),
    ("list", "Buy:\n- milk\n- eggs\n- bread", ["buy milk eggs bread"]),
    ("list", "What should I pack? 1. passport 2. charger", ["what should i pack first passport second charger"]),
    ("list", "Which came first: a) the chicken b) the egg?", ["which came first first the chicken second the egg"]),
    ("list", "Explain the difference between 1. TCP 2. UDP",
     ["explain the difference between first tcp second udp",
      "explain the difference between first t c p second u d p"]),
    ("unit", "She ran 5 km in 25 min.", ["she ran five kilometers in twenty five minutes"]),
    ("unit", "My laptop has 16 GB of RAM.", ["my laptop has sixteen gigabytes of ram"]),
    ("unit", "Is 72°F warm enough to swim?", ["is seventy two degrees fahrenheit warm enough to swim"]),
    ("unit", "How many calories are in 250 ml of milk?",
     ["how many calories are in two hundred fifty milliliters of milk"]),
    ("unit", "A 12 m² room costs $500 a month.", ["a twelve square meters room costs five hundred dollars a month",
                                                  "a twelve square meter room costs five hundred dollars a month"]),
    ("unit", "Is 1.5 kg of flour enough?", ["is one point five kilograms of flour enough"]),
    ("unit", "Can a car do 0 to 60 mph in 3 seconds?", ["can a car do zero to sixty miles per hour in three seconds"]),
    ("unit", "Is 30 km/h slow?", ["is thirty kilometers per hour slow"]),
    ("unit", "Why does water boil at 100°C?", ["why does water boil at one hundred degrees celsius"]),
    ("name", "Is the iPhone 15 worth it?", ["is the iphone fifteen worth it"]),
    ("name", "How fast is a Boeing 747?",
     ["how fast is a boeing seven four seven", "how fast is a boeing seven forty seven"]),
    ("name", "What is COVID-19?", ["what is covid nineteen"]),
    ("name", "Who founded 3M?", ["who founded three m"]),
    ("name", "Is the F-150 a good truck?", ["is the f one fifty a good truck"]),
    ("name", "Did Apollo 11 land in 1969?", ["did apollo eleven land in nineteen sixty nine"]),
    ("name", "Why is Catch-22 a classic?", ["why is catch twenty two a classic"]),
    ("name", "Who wrote 1984?", ["who wrote nineteen eighty four"]),
    ("name", "Does the Galaxy S23 have a good camera?", ["does the galaxy s twenty three have a good camera"]),
    ("name", "Is HTTP/3 used by Google?", ["is h t t p three used by google"]),
]

# Written after the fixes, before running them on it (not used to develop the rules).
HELDOUT = [
    ("date", "Can I book a table for 09/15/2024?", ["can i book a table for september fifteenth twenty twenty four"]),
    ("date", "Was the store closed on 2020-04-01?", ["was the store closed on april first twenty twenty"]),
    ("date", "My flight is on 25/12/2023, is that a Monday?",
     ["my flight is on the twenty fifth of december twenty twenty three is that a monday"]),
    ("date", "Is 10/11/2022 a Thursday?", ["REJECT:ambiguous_date"]),
    ("date", "What did I schedule for July 4th, 2026?", ["what did i schedule for july fourth twenty twenty six"]),
    ("year", "How did the economy grow during 2008 and 2009?",
     ["how did the economy grow during two thousand eight two thousand nine"]),
    ("year", "Which films won in 1994, 1997 and 2001?",
     ["which films won in nineteen ninety four nineteen ninety seven two thousand one"]),
    ("year", "What was life like in 1850?", ["what was life like in eighteen fifty"]),
    ("year", "Were 1066 and 1215 important years?", ["were ten sixty six twelve fifteen important years"]),
    ("year", "Sales in 2019 were higher than in 2018, 2017 or 2016.",
     ["sales in twenty nineteen were higher than in twenty eighteen twenty seventeen or twenty sixteen"]),
    ("version", "Is Java 17 faster than Java 8?", ["is java seventeen faster than java eight"]),
    ("version", "Does macOS 14.1 fix the bug?", ["does macos fourteen point one fix the bug"]),
    ("version", "Should I use HTTP/1.0 or HTTP/2?", ["should i use h t t p one point zero or h t t p two",
                                                     "should i use h t t p one point oh or h t t p two"]),
    ("version", "What's new in Node 20.11.1?", ["what's new in node twenty point eleven point one"]),
    ("version", "Is Android 13 still supported?", ["is android thirteen still supported"]),
    ("math", "What is 7 − 3 × 2?", ["what is seven minus three times two"]),
    ("math", "If x² = 16, what is x?", ["if x squared equals sixteen what is x"]),
    ("math", "What is 4y − 2y?", ["what is four y minus two y"]),
    ("math", "Is 2³ equal to 8?", ["is two cubed equal to eight"]),
    ("math", "What is 100 / 4?", ["what is one hundred divided by four"]),
    ("list", "Sort these: 1. apples 2. pears 3. plums", ["sort these first apples second pears third plums"]),
    ("list", "Pick one: a) red b) blue", ["pick one first red second blue"]),
    ("list", "Todo:\n1. call mom\n2. pay rent", ["todo first call mom second pay rent"]),
    ("list", "Which is healthier, 1. rice or 2. pasta?", ["which is healthier first rice or second pasta"]),
    ("unit", "Is 5 GHz Wi-Fi better than 2.4 GHz?", ["is five gigahertz wi fi better than two point four gigahertz"]),
    ("unit", "How long does it take to walk 3 mi?", ["how long does it take to walk three miles"]),
    ("unit", "Is 38.5°C a fever?", ["is thirty eight point five degrees celsius a fever"]),
    ("unit", "Does a 65 W charger work with my phone?", ["does a sixty five watts charger work with my phone",
                                                         "does a sixty five watt charger work with my phone"]),
    ("unit", "How much is 2 lbs in grams?", ["how much is two pounds in grams"]),
    ("name", "Is the Airbus A380 still flying?", ["is the airbus a three eighty still flying"]),
    ("name", "How far is it along I-80?", ["how far is it along i eighty"]),
    ("name", "Is 5G safe?", ["is five g safe"]),
    ("name", "Which is better, the Pixel 8 or the iPhone 15?",
     ["which is better the pixel eight or the iphone fifteen"]),
    ("name", "Who played in Blink-182?", ["who played in blink one eighty two"]),
    ("name", "Is Route 66 worth driving?", ["is route sixty six worth driving"]),
]


def norm(s: str) -> str:
    s = s.lower().replace("-", " ")
    return " ".join(w for w in re.sub(r"[^\w\s']", " ", s).split() if w != "and")


def load_rev(rev: str):
    """synth.spoken and the selection's ambiguous-date check at `rev` (git show), as modules."""
    src = subprocess.run(["git", "show", f"{rev}:synth/spoken.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    mod = types.ModuleType(f"spoken_{rev}")
    exec(compile(src, f"{rev}:synth/spoken.py", "exec"), mod.__dict__)
    sel = subprocess.run(["git", "show", f"{rev}:synth/speech_text.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return mod, "ambiguous_date" in sel


def outcome(spoken_form, rejects_ambiguous: bool, query: str) -> str:
    from synth.spoken import ambiguous_date
    if rejects_ambiguous and ambiguous_date(query):
        return "REJECT:ambiguous_date"
    return spoken_form(query)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="HEAD", help="the 'before' rewriter (default HEAD: the working tree is 'after')")
    p.add_argument("--max-wer-written", type=float, default=0.25)
    p.add_argument("-v", action="store_true", help="list every query")
    a = p.parse_args(argv)
    from filters.wer import written_normalize, written_wer
    from synth.spoken import spoken_form
    old, old_rejects = load_rev(a.rev)
    for title, queries in (("development set", SET), ("held-out set", HELDOUT)):
        print(f"== {title}")
        report(queries, old, old_rejects, a, written_normalize, written_wer, spoken_form)
    import synth.spoken as sp  # the wrong rewrite, injected: every year said as a cardinal
    right = {q: spoken_form(q) for _, q, _ in SET + HELDOUT}
    year, sp.year = sp.year, sp.cardinal
    try:
        changed = {q: spoken_form(q) for q in right if spoken_form(q) != right[q]}
    finally:
        sp.year = year
    caught = {q for q, said in changed.items() if written_wer(q, said) > a.max_wer_written}
    odd = {q for q, said in changed.items() if re.search(r"thousand \w+ hundred", said)}  # 1100-1999
    print(f"\nyears said as cardinals (injected): {len(changed)} queries changed; a year 1100-1999 read "
          f"'one thousand nine hundred ...': {len(odd & caught)}/{len(odd)} caught; only 2000-2099 read 'two "
          f"thousand and ...' (a reading the check accepts): {len((set(changed) - odd) & caught)}/"
          f"{len(set(changed) - odd)} caught")
    return 0


def report(queries, old, old_rejects, a, written_normalize, written_wer, spoken_form):
    rows, cats = [], sorted({c for c, _, _ in queries})
    for cat, q, right in queries:
        r = []
        for form, rej in ((old.spoken_form, old_rejects), (spoken_form, True)):
            said = outcome(form, rej, q)
            ok = said in right if said.startswith("REJECT") or right[0].startswith("REJECT") else \
                norm(said) in {norm(x) for x in right}
            ww = None if said.startswith("REJECT") else written_wer(q, said)
            r.append((said, ok, ww))
        rows.append((cat, q, r))
        if a.v or not r[1][1]:
            print(f"{cat:8} {'ok ' if r[0][1] else 'BAD'}→{'ok ' if r[1][1] else 'BAD'} "
                  f"w={r[1][2] if r[1][2] is None else round(r[1][2], 2)!s:5} {q!r}\n"
                  f"{'':14}now: {r[1][0]!r}\n{'':14}W(q)={written_normalize(q)!r} W(said)="
                  f"{written_normalize(r[1][0]) if r[1][2] is not None else None!r}")
    t = a.max_wer_written
    print(f"\n{'category':10} {'n':>3} {'right before':>13} {'right after':>12}")
    for c in cats + ["all"]:
        sel = [r for r in rows if c in ("all", r[0])]
        print(f"{c:10} {len(sel):3} {sum(r[2][0][1] for r in sel):13} {sum(r[2][1][1] for r in sel):12}")
    for i, name in ((0, "before"), (1, "after")):
        right = [r for r in rows if r[2][i][1] and r[2][i][2] is not None]
        wrong = [r for r in rows if not r[2][i][1] and r[2][i][2] is not None]
        fr = sum(r[2][i][2] > t for r in right)
        caught = sum(r[2][i][2] > t for r in wrong)
        print(f"{name}: right {sum(r[2][i][1] for r in rows)}/{len(rows)}; written-form check (> {t}): "
              f"false rejects {fr}/{len(right)} right rewrites, caught {caught}/{len(wrong)} wrong rewrites")


if __name__ == "__main__":
    sys.exit(main())
