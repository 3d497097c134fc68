"""The KTO paper's imbalance experiment in the quality study (``quality.py --desirable_keep``).

KTO is said to hold up when thumbs-up answers are scarce (Ethayarajh et al. 2024 drop 90% of the
desirable examples). ``data.unpair`` turns every pair into one desirable and one undesirable row;
this gives the same pairs the fit would train on (its ``data.train_size`` pairs, drawn as the
DataModule draws them) as unpaired rows with only a fraction of the desirable ones kept, so the
balanced and the imbalanced run differ in nothing but the dropped thumbs-up rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets

from lit_dpo.data.pairs import extract_pair


def fit_pairs(count: int, train_size: int, seed: int) -> list[int]:
    """Which of ``count`` clean pairs a fit with ``data.train_size`` and ``data.seed`` trains on:
    the DataModule shuffles the kept rows with the seed and takes the first ``train_size``."""
    order = datasets.Dataset.from_dict({"i": list(range(count))}).shuffle(seed=seed)["i"]
    return order[:train_size]


def unpaired_rows(lines: list[str], keep: float, seed: int) -> list[dict]:
    """Pairs (HH-RLHF JSONL lines) -> TRL's conversational unpaired rows: every rejected reply an
    undesirable row, and a seeded ``keep`` fraction of the chosen replies desirable rows."""
    pairs = [extract_pair(json.loads(line), f"pair {n}", "hh-rlhf") for n, line in enumerate(lines)]
    kept = set(random.Random(seed).sample(range(len(pairs)), round(keep * len(pairs))))
    rows = []
    for n, pair in enumerate(pairs):
        for reply, label in ((pair.chosen, True), (pair.rejected, False)):
            if label and n not in kept:
                continue
            rows.append({"prompt": pair.prompt,
                         "completion": [{"role": "assistant", "content": reply}],
                         "label": label})
    return rows


def imbalanced_train(folder: Path, train_size: int, keep: float, seed: int) -> list[str]:
    """The JSONL lines of the fit's pairs in ``folder/train.jsonl`` as unpaired rows with a
    ``keep`` fraction of the desirable ones (``quality.prepare_imbalanced`` writes them beside
    the held-out pairs, unchanged, so the accuracies compare with paired runs)."""
    lines = (folder / "train.jsonl").read_text().splitlines()
    chosen = [lines[i] for i in fit_pairs(len(lines), train_size, seed)]
    rows = unpaired_rows(chosen, keep, seed)
    desirable = sum(row["label"] for row in rows)
    print(f"quality: {len(rows)} unpaired rows from {train_size} pairs: {desirable} desirable "
          f"(a {keep:g} share kept), {len(rows) - desirable} undesirable", flush=True)
    return [json.dumps(row) for row in rows]
