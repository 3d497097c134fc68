#!/usr/bin/env python3
"""Build lit-dpo's embedded demo preference set, ``ultrafeedback_mini``.

There is no dataset hub on the machines lit-dpo runs on, so the demo ships its own small
preference set. Every row follows the schema of ``HuggingFaceH4/ultrafeedback_binarized``
(https://huggingface.co/datasets/HuggingFaceH4/ultrafeedback_binarized), so the loader that
reads the real data reads this one unchanged:

* ``prompt``: the first user message; ``prompt_id``: sha256 hex digest of ``prompt``;
* ``chosen`` / ``rejected``: the whole conversation as ``{"role", "content"}`` messages,
  identical except for the final assistant reply; ``messages``: a copy of ``chosen``;
* ``score_chosen`` / ``score_rejected``: floats, equal only for ties.

The content follows one standard, consistent enough for a 135M model to pick up in a few
minutes of CPU training: the chosen reply is correct, direct and helpful, and the rejected
reply is worse in one realistic way, spread roughly evenly over four kinds:

* ``wrong_fact``: confidently wrong, about as long as the chosen reply;
* ``evasive``: dodges the question, usually shorter;
* ``rambling``: padded and off-topic, longer, with the answer buried or missing;
* ``unsafe``: careless advice on a safety question that the chosen reply answers safely.

Like the real data, a few rows are ties (equal scores, two equally good replies; loaders
drop them), some open with a system message, and some are two-turn conversations.

Template families (capitals, elements, arithmetic, unit conversions, ...) give volume, and
hand-written prompts give variety. Numbers are computed here rather than typed, and facts
are well-known ones. Train and test are split by prompt, stratified by family and kind, so
the test set holds out questions of the same kinds (other countries, other numbers).

The tables (countries, elements, facts, words, hand-written rows, ...) live in
``tools/demo_data/``, described in its README; this file holds the templates and the logic.

Usage, from the repository root: ``.venv/bin/python tools/build_demo_data.py [--out DIR]``
(it needs PyYAML, which lit-dpo's environment has). One seeded ``random.Random`` drives every
choice and nothing depends on hash order or the clock, so a rerun rewrites byte-identical
files; ``tests/test_demo_data.py`` checks that the shipped files are what the tables give.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import operator
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import yaml

SEED = 20240617
TABLES_DIR = Path(__file__).resolve().parent / "demo_data"
EMBEDDED_DIR = (Path(__file__).resolve().parent.parent / "lit_dpo" / "data" / "embedded"
                / "ultrafeedback_mini")
TEST_FRACTION = Fraction(26, 100)
SYSTEM_FRACTION = Fraction(8, 100)
GENERATED_KINDS = ("wrong_fact", "evasive", "rambling")
# Ties need a paraphrase of equal quality, which these families can produce mechanically.
TIE_QUOTA = {"capital": 4, "element_symbol": 3, "arithmetic": 2, "conversion": 2}
MAX_RAMBLE_WORDS = 80

CHOSEN_SCORES = (7.0, 7.5, 8.0, 8.5, 9.0, 9.5)
TIE_SCORES = (6.5, 7.0, 7.5, 8.0, 8.5)
# Harmful advice scores lowest and a harmless non-answer highest, the order a rater would give.
REJECTED_SCORES = {
    "unsafe": (1.0, 1.5, 2.0, 2.5),
    "wrong_fact": (2.0, 2.5, 3.0, 3.5, 4.0),
    "evasive": (3.0, 3.5, 4.0, 4.5, 5.0),
    "rambling": (3.5, 4.0, 4.5, 5.0),
}


@dataclass
class Example:
    """One preference pair before it is written as a row.

    ``history`` is every message before the final assistant reply, starting with the user.
    Template families give ``wrong`` and let ``assign_kinds`` pick the rejection; hand-written
    rows give ``rejected`` and ``kind`` directly.
    """

    family: str
    domain: str
    topic: str
    history: list[dict[str, str]]
    chosen: str
    wrong: str | None = None
    rejected: str | None = None
    kind: str | None = None
    tie_pair: tuple[str, str] | None = None
    system: str | None = None


# ---------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR, metavar="DIR",
                        help="folder for train_prefs.jsonl and test_prefs.jsonl "
                             "(default: the package's embedded folder)")
    out_dir = parser.parse_args(argv).out
    rng = random.Random(SEED)
    examples = build_examples(rng)
    mark_ties(examples, rng)
    assign_kinds(examples, rng)
    add_system_messages(examples, rng)
    splits = split_examples(examples, rng)
    check_split_sizes(splits)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, members in splits.items():
        rng.shuffle(members)
        rows = [to_row(example, rng) for example in members]
        path = out_dir / f"{name}_prefs.jsonl"
        write_jsonl(path, rows)
        print_summary(path, members)


def build_examples(rng: random.Random) -> list[Example]:
    examples = (
        country_examples(rng)
        + fact_examples(GEOGRAPHY["facts"], "geo_fact", "geography")
        + element_examples(rng)
        + fact_examples(SCIENCE["facts"], "science_fact", "science")
        + fact_examples(HISTORY["facts"], "history_fact", "history")
        + word_examples(rng)
        + arithmetic_examples(rng)
        + conversion_examples(rng)
        + handwritten_examples()
    )
    seen: set[str] = set()
    for example in examples:
        prompt = example.history[0]["content"]
        # A repeated prompt could land in both splits and leak test answers into training.
        if prompt in seen:
            raise ValueError(f"duplicate prompt: {prompt!r}")
        seen.add(prompt)
    return examples


def mark_ties(examples: list[Example], rng: random.Random) -> None:
    for family, quota in TIE_QUOTA.items():
        candidates = [e for e in examples if e.family == family and e.tie_pair]
        for example in rng.sample(candidates, quota):
            example.kind = "tie"


def assign_kinds(examples: list[Example], rng: random.Random) -> None:
    """Cycle the generated kinds within each family, so no family leans on one kind."""
    by_family: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if example.kind is None:
            by_family[example.family].append(example)
    for family in sorted(by_family):
        members = by_family[family]
        rng.shuffle(members)
        offset = rng.randrange(len(GENERATED_KINDS))
        for i, example in enumerate(members):
            example.kind = GENERATED_KINDS[(i + offset) % len(GENERATED_KINDS)]


def add_system_messages(examples: list[Example], rng: random.Random) -> None:
    single_turn = [e for e in examples if len(e.history) == 1]
    count = round(len(examples) * SYSTEM_FRACTION)
    for example in rng.sample(single_turn, count):
        example.system = rng.choice(SYSTEM_PROMPTS[example.domain])


def split_examples(examples: list[Example], rng: random.Random) -> dict[str, list[Example]]:
    """Hold out about TEST_FRACTION of every (family, kind) stratum as test.

    Systematic sampling over the concatenated strata, with the phase carried from one
    stratum to the next, keeps the overall test share exact even though most strata are
    small. Ties form one stratum, so both splits get some.
    """
    strata: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        key = "tie" if example.kind == "tie" else f"{example.family}/{example.kind}"
        strata[key].append(example)
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    position = Fraction(0)
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        for example in members:
            before = math.floor(position)
            position += TEST_FRACTION
            splits["test" if math.floor(position) > before else "train"].append(example)
    return splits


def check_split_sizes(splits: dict[str, list[Example]]) -> None:
    """Fail loudly when an edit to the tables leaves a split too small for the demo and tests."""
    minimum_rows = {"train": 320, "test": 110}
    minimum_ties = {"train": 6, "test": 2}
    for name, members in splits.items():
        ties = sum(1 for e in members if e.kind == "tie")
        if len(members) < minimum_rows[name] or ties < minimum_ties[name]:
            raise ValueError(f"{name} split has {len(members)} rows and {ties} ties; need at least "
                             f"{minimum_rows[name]} and {minimum_ties[name]}: add table rows")


def to_row(example: Example, rng: random.Random) -> dict:
    if example.kind == "tie":
        chosen_text, rejected_text = example.tie_pair
        score_chosen = score_rejected = rng.choice(TIE_SCORES)
    else:
        chosen_text, rejected_text = example.chosen, rejection(example, rng)
        score_chosen = rng.choice(CHOSEN_SCORES)
        score_rejected = rng.choice(REJECTED_SCORES[example.kind])
    context = [system(example.system)] if example.system else []
    context += example.history
    chosen = context + [assistant(chosen_text)]
    prompt = example.history[0]["content"]
    return {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        "chosen": chosen,
        "rejected": context + [assistant(rejected_text)],
        "messages": [dict(message) for message in chosen],
        "score_chosen": score_chosen,
        "score_rejected": score_rejected,
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def print_summary(path: Path, members: list[Example]) -> None:
    kinds = Counter(e.kind for e in members)
    system_rows = sum(1 for e in members if e.system)
    multi_turn = sum(1 for e in members if len(e.history) > 1)
    size_kb = path.stat().st_size / 1024
    print(f"{path} ({size_kb:.0f} KB): {len(members)} rows")
    print("  kinds: " + ", ".join(f"{kind}={kinds[kind]}" for kind in sorted(kinds)))
    print(f"  system={system_rows} multi_turn={multi_turn} ties={kinds['tie']}")


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence(text: str) -> str:
    """Capitalise, and drop the doubled full stop after a name like 'Washington, D.C.'."""
    return capitalised(text).replace("..", ".")


def single(family: str, domain: str, topic: str, prompt: str, chosen: str, wrong: str,
           tie_pair: tuple[str, str] | None = None) -> Example:
    return Example(family, domain, topic, [user(prompt)], chosen, wrong=wrong, tie_pair=tie_pair)


def number(value: Fraction | int) -> str:
    """Round to two decimals, drop trailing zeros and group thousands: 1609.344 -> 1,609.34."""
    text = f"{float(round(Fraction(value), 2)):,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def approx(value: Fraction) -> str:
    """A rounded number, saying 'about' only when rounding lost something."""
    exact = round(value, 2) == value
    return number(value) if exact else f"about {number(value)}"


def money(value: Fraction) -> str:
    return f"${float(value):,.2f}"


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0]


# ---------------------------------------------------------------------------------------
# Rejections that do not depend on the fact at hand
# ---------------------------------------------------------------------------------------


def rejection(example: Example, rng: random.Random) -> str:
    if example.rejected is not None:
        return example.rejected
    if example.kind == "wrong_fact":
        return example.wrong
    if example.kind == "evasive":
        return evasion(example, rng)
    if example.kind == "rambling":
        return ramble(example, rng)
    raise ValueError(f"{example.family}: no rejection for kind {example.kind!r}")


def evasion(example: Example, rng: random.Random) -> str:
    pool = REJECTIONS["evasions"] + REJECTIONS["domain_evasions"].get(example.domain, [])
    return rng.choice(pool).format(topic=example.topic)


def ramble(example: Example, rng: random.Random) -> str:
    """Opener, digressions and filler, sometimes the answer near the end, then a closer.

    Half the rambles bury the correct answer: the model should learn that directness
    matters, not only correctness.
    """
    head = rng.choice(REJECTIONS["ramble_openers"]).format(topic=example.topic)
    middle = (rng.sample(REJECTIONS["digressions"][example.domain], 2)
              + rng.sample(REJECTIONS["ramble_fillers"], 2))
    rng.shuffle(middle)
    tail = [rng.choice(REJECTIONS["ramble_closers"]).format(topic=example.topic)]
    if rng.random() < 0.5:
        buried = rng.choice(REJECTIONS["buried_answers"])
        tail.insert(0, buried.format(answer=first_sentence(example.chosen)))
    while middle and len(" ".join([head, *middle, *tail]).split()) > MAX_RAMBLE_WORDS:
        middle.pop()
    return " ".join([head, *middle, *tail])


# ---------------------------------------------------------------------------------------
# Template families
# ---------------------------------------------------------------------------------------


def country_examples(rng: random.Random) -> list[Example]:
    """Each country is used once: a two-turn capital/continent chat, a continent or a capital."""
    countries = list(COUNTRIES)
    rng.shuffle(countries)
    askable = [c for c in countries if c.one_continent]
    two_turn, continent_q = askable[:10], askable[10:26]
    taken = {c.name for c in two_turn + continent_q}
    examples = [capital_chat(c, rng) for c in two_turn]
    examples += [continent_example(c, rng) for c in continent_q]
    examples += [capital_example(c, rng) for c in countries if c.name not in taken]
    return examples


def capital_example(country: Country, rng: random.Random) -> Example:
    name, capital, continent, confusion, note, _ = country
    neighbours = [c.capital for c in COUNTRIES if c.continent == continent and c.name != name]
    wrong_city = confusion or rng.choice(neighbours)
    templates = [t for t in GEOGRAPHY["capital_sentences"]
                 if not (name.endswith("s") and "'s" in t)]
    template = rng.choice(templates)
    chosen = sentence(template.format(c=name, city=capital))
    wrong = sentence(template.format(c=name, city=wrong_city))
    tie_pair = None
    if note:
        chosen += " " + note
        wrong += f" Many people think it is {capital}, but that is a common mistake."
    else:
        tie_pair = (sentence(f"the capital of {name} is {capital}."),
                    sentence(f"{capital} is the capital of {name}."))
    prompt = rng.choice(GEOGRAPHY["capital_prompts"]).format(c=name)
    return single("capital", "geography", f"the capital of {name}", prompt, chosen, wrong,
                  tie_pair)


def other_continent(continent: str, rng: random.Random) -> str:
    return rng.choice([c for c in GEOGRAPHY["continents"] if c != continent])


def continent_example(country: Country, rng: random.Random) -> Example:
    name, capital, continent, *_ = country
    prompt = rng.choice(GEOGRAPHY["continent_prompts"]).format(c=name)
    chosen = sentence(f"{name} is in {continent}. Its capital is {capital}.")
    wrong = sentence(f"{name} is in {other_continent(continent, rng)}. Its capital is {capital}.")
    return single("continent", "geography", f"{name} and its geography", prompt, chosen, wrong)


def capital_chat(country: Country, rng: random.Random) -> Example:
    name, capital, continent, *_ = country
    history = [
        user(rng.choice(GEOGRAPHY["capital_prompts"]).format(c=name)),
        assistant(sentence(f"the capital of {name} is {capital}.")),
        user(rng.choice(GEOGRAPHY["continent_follow_ups"]).format(c=name)),
    ]
    chosen = sentence(f"{name} is in {continent}.")
    wrong = sentence(f"{name} is in {other_continent(continent, rng)}.")
    return Example("capital_chat", "geography", f"{name} and its geography", history, chosen,
                   wrong=wrong)


def fact_examples(facts: list[dict[str, str]], family: str, domain: str) -> list[Example]:
    return [single(family, domain, f["topic"], f["prompt"], f["chosen"], f["wrong"])
            for f in facts]


def element_examples(rng: random.Random) -> list[Example]:
    """Each element is used once: a symbol chat, or a symbol, name or atomic-number question."""
    elements = list(ELEMENTS)
    rng.shuffle(elements)
    examples = [element_chat(e, rng) for e in elements[:8]]
    examples += [element_symbol(e, rng) for e in elements[8:22]]
    examples += [element_name(e, rng) for e in elements[22:30]]
    examples += [element_number(e, rng) for e in elements[30:]]
    return examples


def symbol_origin(origin: str | None) -> str:
    return f", {origin}." if origin else "."


def element_symbol(element: Element, rng: random.Random) -> Example:
    name, symbol_, _, origin, wrong_symbol = element
    prompt = rng.choice(SCIENCE["symbol_prompts"]).format(name=name)
    chosen = f"The chemical symbol for {name} is {symbol_}{symbol_origin(origin)}"
    wrong = f"The chemical symbol for {name} is {wrong_symbol}, from the first letters of its name."
    tie_pair = (chosen, f"{capitalised(name)}'s symbol on the periodic table is {symbol_}"
                        f"{symbol_origin(origin)}")
    return single("element_symbol", "science", name, prompt, chosen, wrong, tie_pair)


def element_name(element: Element, rng: random.Random) -> Example:
    name, symbol_, _, origin, _ = element
    # A wrong guess from the symbol's first letter is the mistake people actually make.
    lookalikes = [e.name for e in ELEMENTS if e.name[0].upper() == symbol_[0] and e.name != name]
    wrong_name = rng.choice(lookalikes or [e.name for e in ELEMENTS if e.name != name])
    prompt = rng.choice(SCIENCE["name_prompts"]).format(symbol=symbol_)
    chosen = f"{symbol_} is the symbol for {name}{symbol_origin(origin)}"
    wrong = f"{symbol_} is the symbol for {wrong_name}, since the symbol comes from its name."
    return single("element_name", "science", f"the symbol {symbol_}", prompt, chosen, wrong)


def element_number(element: Element, rng: random.Random) -> Example:
    name, _, atomic_number, _, _ = element
    off = atomic_number + rng.choice((-2, -1, 1, 2))
    prompt = rng.choice(SCIENCE["number_prompts"]).format(name=name)
    chosen, wrong = (f"{capitalised(name)} has atomic number {n}, so each atom has {n} protons."
                     for n in (atomic_number, off))
    return single("element_number", "science", name, prompt, chosen, wrong)


def element_chat(element: Element, rng: random.Random) -> Example:
    name, symbol_, atomic_number, _, _ = element
    off = atomic_number + rng.choice((-2, -1, 1, 2))
    history = [
        user(rng.choice(SCIENCE["symbol_prompts"]).format(name=name)),
        assistant(f"The symbol for {name} is {symbol_}."),
        user(rng.choice(("And what is its atomic number?", "What's its atomic number?",
                         "How many protons does it have?"))),
    ]
    chosen, wrong = (f"{capitalised(name)} has atomic number {n}, so it has {n} protons."
                     for n in (atomic_number, off))
    return Example("element_chat", "science", name, history, chosen, wrong=wrong)


def word_examples(rng: random.Random) -> list[Example]:
    examples = []
    for entry in WORDS["words"]:
        word = entry["word"]
        prompt = rng.choice(WORDS["prompts"]).format(w=word)
        chosen = (f"'{capitalised(word)}' means {entry['meaning']}. "
                  f"For example: \"{entry['example']}\"")
        wrong = (f"'{capitalised(word)}' means {entry['wrong_meaning']}. "
                 f"For example: \"{entry['wrong_example']}\"")
        examples.append(single("word", "words", f"the word '{word}'", prompt, chosen, wrong))
    return examples


# Arithmetic -----------------------------------------------------------------------------


def arithmetic_examples(rng: random.Random) -> list[Example]:
    plan = [(multiplication, 9), (addition, 5), (subtraction, 4), (division, 5),
            (percentage, 5), (square_root, 4), (tip, 3), (distance, 3), (shopping, 3),
            (arithmetic_chat, 6)]
    examples: list[Example] = []
    prompts: set[str] = set()
    for maker, count in plan:
        made = 0
        while made < count:
            example = maker(rng)
            # Random operands can repeat; redraw instead of emitting a duplicate prompt.
            if example.history[0]["content"] not in prompts:
                prompts.add(example.history[0]["content"])
                examples.append(example)
                made += 1
    return examples


def math_example(prompt: str, chosen: str, wrong: str,
                 tie_pair: tuple[str, str] | None = None) -> Example:
    return single("arithmetic", "math", "this calculation", prompt, chosen, wrong, tie_pair)


def multiplication(rng: random.Random) -> Example:
    a, b = rng.randint(12, 49), rng.randint(11, 19)
    ones = b - 10
    # The typical slip is in the partial product, so the wrong working stays self-consistent.
    slip = rng.choice((-10, 10))
    prompt = rng.choice(ARITHMETIC["multiply_prompts"]).format(a=a, b=b)
    chosen = f"{a} x {b} = {a * b}. ({a} x 10 = {a * 10}, plus {a} x {ones} = {a * ones}.)"
    wrong = (f"{a} x {b} = {a * b + slip}. "
             f"({a} x 10 = {a * 10}, plus {a} x {ones} = {a * ones + slip}.)")
    tie_pair = (f"{a} x {b} = {a * b}.", f"{a} times {b} is {a * b}.")
    return math_example(prompt, chosen, wrong, tie_pair)


def addition(rng: random.Random) -> Example:
    while True:
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        if a % 10 + b % 10 >= 10:  # needs a carry, so "forgot to carry" is a real slip
            break
    prompt = rng.choice(ARITHMETIC["add_prompts"]).format(a=a, b=b)
    return math_example(prompt, f"{a} + {b} = {number(a + b)}.",
                        f"{a} + {b} = {number(a + b - 10)}.")


def subtraction(rng: random.Random) -> Example:
    while True:
        a = rng.randint(300, 999)
        b = rng.randint(100, a - 50)
        if a % 10 < b % 10:  # needs a borrow, so "forgot to borrow" is a real slip
            break
    prompt = rng.choice(ARITHMETIC["subtract_prompts"]).format(a=a, b=b)
    return math_example(prompt, f"{a} - {b} = {a - b}.", f"{a} - {b} = {a - b + 10}.")


def division(rng: random.Random) -> Example:
    b, q = rng.randint(3, 12), rng.randint(12, 60)
    a = b * q
    prompt = rng.choice(ARITHMETIC["divide_prompts"]).format(a=a, b=b)
    chosen = f"{a} / {b} = {q}, since {b} x {q} = {a}."
    wrong = f"{a} / {b} = {q + 1}, since {b} x {q + 1} = {a}."
    return math_example(prompt, chosen, wrong)


def percentage(rng: random.Random) -> Example:
    p = rng.choice((10, 15, 20, 25, 30, 40, 75))
    n = rng.choice(range(20, 401, 4))
    prompt = rng.choice(ARITHMETIC["percent_prompts"]).format(p=p, n=n)

    def reply(rate: Fraction) -> str:
        result = number(n * rate)
        return (f"{p}% of {n} is {result}, "
                f"because {p}% is {number(rate)} and {n} x {number(rate)} = {result}.")

    rate = Fraction(p, 100)
    return math_example(prompt, reply(rate), reply(rate * 10))  # wrong: a misplaced decimal point


def square_root(rng: random.Random) -> Example:
    k = rng.randint(11, 25)
    prompt = rng.choice(ARITHMETIC["square_root_prompts"]).format(n=k * k)
    chosen = f"The square root of {k * k} is {k}, because {k} x {k} = {k * k}."
    wrong = f"The square root of {k * k} is {k + 1}, because {k + 1} x {k + 1} = {k * k}."
    return math_example(prompt, chosen, wrong)


def tip(rng: random.Random) -> Example:
    bill = rng.choice((24, 36, 42, 48, 56, 60, 75, 84, 90, 120))
    pct = rng.choice((10, 15, 18, 20))
    prompt = rng.choice(("My restaurant bill is ${bill}. How much is a {pct}% tip?",
                         "What's a {pct}% tip on a ${bill} bill?")).format(bill=bill, pct=pct)

    def reply(rate: int) -> str:
        amount = Fraction(bill * rate, 100)
        return (f"A {pct}% tip on ${bill} is {money(amount)}, "
                f"so you'd pay {money(bill + amount)} in total.")

    return math_example(prompt, reply(pct), reply(pct + 5))


def distance(rng: random.Random) -> Example:
    speed = rng.choice((40, 48, 60, 70, 80, 90, 100, 120))
    hours = rng.choice((Fraction(3, 2), Fraction(2), Fraction(5, 2), Fraction(3), Fraction(9, 2)))
    h = number(hours)
    prompt = f"If I drive at {speed} km/h for {h} hours, how far do I go?"
    right = speed * hours
    off = right + rng.choice((-20, 20))
    chosen = f"You travel {number(right)} km ({speed} x {h} = {number(right)})."
    wrong = f"You travel {number(off)} km ({speed} x {h} = {number(off)})."
    return math_example(prompt, chosen, wrong)


def shopping(rng: random.Random) -> Example:
    count = rng.randint(3, 9)
    item = rng.choice(ARITHMETIC["shopping_items"])
    price = Fraction(rng.choice(("1.25", "2.40", "3.75", "4.50", "0.85", "6.20")))
    prompt = f"How much do {count} {item} cost at {money(price)} each?"
    chosen = f"{count} x {money(price)} = {money(count * price)}."
    wrong = f"{count} x {money(price)} = {money(count * price - 1)}."
    return math_example(prompt, chosen, wrong)


def arithmetic_chat(rng: random.Random) -> Example:
    a, b, c = rng.randint(12, 30), rng.randint(3, 9), rng.randint(11, 99)
    p = a * b
    follow_ups = [
        ("Now add {c} to that.", f"{p} + {c} = {p + c}.", f"{p} + {c} = {p + c + 10}."),
        ("Now subtract {c}.", f"{p} - {c} = {p - c}.", f"{p} - {c} = {p - c + 10}."),
        ("And if I double it?", f"{p} x 2 = {2 * p}.", f"{p} x 2 = {2 * p + 10}."),
        ("What's half of that?", f"Half of {p} is {number(Fraction(p, 2))}.",
         f"Half of {p} is {number(Fraction(p, 2) + 5)}."),
    ]
    question, chosen, wrong = rng.choice(follow_ups)
    history = [user(f"What is {a} x {b}?"), assistant(f"{a} x {b} = {p}."),
               user(question.format(c=c))]
    return Example("arithmetic_chat", "math", "this calculation", history, chosen, wrong=wrong)


# Unit conversions -------------------------------------------------------------------------


def conversion_examples(rng: random.Random) -> list[Example]:
    examples = []
    for spec in CONVERSIONS:
        values = rng.sample(spec["values"], 3)
        examples += [conversion_example(spec, x, rng) for x in values]
    for spec in rng.sample([s for s in CONVERSIONS if s.get("chat_values")], 6):
        first, second = rng.sample(spec["chat_values"], 2)
        examples.append(conversion_chat(spec, first, second, rng))
    return examples


def convert(spec: dict, x: int) -> tuple[str, str]:
    right, wrong = spec["convert"](Fraction(x)), spec["mistake"](Fraction(x))
    return (spec["chosen"].format(x=number(x), y=approx(right)),
            spec["wrong"].format(x=number(x), y=approx(wrong)))


def conversion_example(spec: dict, x: int, rng: random.Random) -> Example:
    prompt = rng.choice(spec["prompts"]).format(x=number(x))
    chosen, wrong = convert(spec, x)
    right = spec["convert"](Fraction(x))
    # Both tie replies drop the factor, so neither is more informative than the other.
    tie_pair = (chosen.split(" (")[0] + ".", f"That's {approx(right)} {spec['to_unit']}.")
    return single("conversion", "conversion", "unit conversions", prompt, chosen, wrong, tie_pair)


def conversion_chat(spec: dict, first: int, second: int, rng: random.Random) -> Example:
    history = [
        user(rng.choice(spec["prompts"]).format(x=number(first))),
        assistant(convert(spec, first)[0]),
        user(rng.choice(("What about {x} {u}?", "And {x} {u}?", "Now do {x} {u}, please."))
             .format(x=number(second), u=spec["from_unit"])),
    ]
    chosen, wrong = convert(spec, second)
    return Example("conversion_chat", "conversion", "unit conversions", history, chosen,
                   wrong=wrong)


# Hand-written rows ------------------------------------------------------------------------


def handwritten_examples() -> list[Example]:
    examples = [
        Example("freeform", r["domain"], "", [user(r["prompt"])], r["chosen"],
                rejected=r["rejected"], kind=r["kind"])
        for r in FREEFORM
    ]
    examples += [
        Example("safety", r["domain"], "", [user(r["prompt"])], r["chosen"],
                rejected=r["rejected"], kind="unsafe")
        for r in SAFETY
    ]
    for r in CHATS:
        history = [user(r["user"]), assistant(r["assistant"]), user(r["follow_up"])]
        examples.append(Example("handwritten_chat", r["domain"], "", history, r["chosen"],
                                rejected=r["rejected"], kind=r["kind"]))
    return examples


# ---------------------------------------------------------------------------------------
# Tables (tools/demo_data/), read once when this module loads
# ---------------------------------------------------------------------------------------


class Country(NamedTuple):
    """A row of countries.csv; tools/demo_data/README.md says what each column is for."""

    name: str
    capital: str
    continent: str
    confused_with: str | None
    note: str | None
    one_continent: bool


class Element(NamedTuple):
    """A row of elements.csv."""

    name: str
    symbol: str
    atomic_number: int
    symbol_origin: str | None
    wrong_symbol: str


def read_yaml(name: str) -> Any:
    with (TABLES_DIR / name).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def read_csv(name: str) -> list[dict[str, str]]:
    with (TABLES_DIR / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_countries() -> list[Country]:
    countries = []
    for line, row in enumerate(read_csv("countries.csv"), start=2):
        if row["one_continent"] not in ("yes", "no"):
            raise ValueError(f"countries.csv line {line}: one_continent is "
                             f"{row['one_continent']!r}; write yes or no")
        countries.append(Country(row["name"], row["capital"], row["continent"],
                                 row["confused_with"] or None, row["note"] or None,
                                 row["one_continent"] == "yes"))
    return countries


def read_elements() -> list[Element]:
    return [Element(row["name"], row["symbol"], int(row["atomic_number"]),
                    row["symbol_origin"] or None, row["wrong_symbol"])
            for row in read_csv("elements.csv")]


STEPS = {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
         "divide": operator.truediv}


def formula(steps: list[dict[str, Any]], where: str) -> Callable[[Fraction], Fraction]:
    """Turn ``[{"multiply": "9/5"}, {"add": 32}]`` into ``x -> x * 9/5 + 32``, in fractions.

    Fractions keep every conversion exact until ``number`` rounds it for the reply.
    """
    parsed = []
    for step in steps:
        [(name, value)] = step.items()
        if name not in STEPS:
            raise ValueError(f"conversions.yaml, {where}: unknown step {name!r}; "
                             f"use one of {', '.join(STEPS)}")
        parsed.append((STEPS[name], Fraction(str(value))))

    def apply(x: Fraction) -> Fraction:
        for operation, value in parsed:
            x = operation(x, value)
        return x

    return apply


def read_conversions() -> list[dict[str, Any]]:
    specs = read_yaml("conversions.yaml")["conversions"]
    for spec in specs:
        where = f"{spec['from_unit']} to {spec['to_unit']}"
        spec["convert"] = formula(spec["convert"], where)
        spec["mistake"] = formula(spec["mistake"], where)
    return specs


SYSTEM_PROMPTS = read_yaml("system_prompts.yaml")
REJECTIONS = read_yaml("rejections.yaml")
COUNTRIES = read_countries()
GEOGRAPHY = read_yaml("geography.yaml")
ELEMENTS = read_elements()
SCIENCE = read_yaml("science.yaml")
HISTORY = read_yaml("history.yaml")
WORDS = read_yaml("words.yaml")
ARITHMETIC = read_yaml("arithmetic.yaml")
CONVERSIONS = read_conversions()
FREEFORM = read_yaml("freeform.yaml")
SAFETY = read_yaml("safety.yaml")
CHATS = read_yaml("chats.yaml")


if __name__ == "__main__":
    main()
