#!/usr/bin/env python3
"""Held-out preference metrics of one adapter, pair by pair (run by quality.py as a child).

``lit-dpo compare``'s held-out evaluation itself (``compare.command.heldout_loader``,
``scoring.heldout_evaluation``), plus what compare does not keep: each pair's outcome under every
accuracy (``lit_dpo.train.metrics.pair_outcomes``) and an id of the pair, so that two runs can be
compared pair by pair later (``quality.py --diff``).

    python tools/quality_eval.py ADAPTER DATA_DIR VAL_SIZE BETA MAX_LENGTH OUT.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def pair_id(row: dict) -> str:
    """A short id of a tokenized pair: the same pair, tokenizer and max_length give the same id."""
    text = json.dumps([row["prompt_ids"], row["chosen_ids"], row["rejected_ids"]])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def main(adapter: str, data: str, val_size: int, beta: float, max_length: int, out: str) -> None:

    from lit_dpo.compare.command import heldout_loader
    from lit_dpo.compare.scoring import heldout_evaluation
    from lit_dpo.models.inference import (
        adapter_base_model,
        load_for_inference,
        reference_adapter_for,
    )
    from lit_dpo.stats import interval_summary

    base = adapter_base_model(adapter, None)
    reference_adapter, problems = reference_adapter_for(adapter, None, False)
    if problems:
        raise SystemExit(f"{adapter}: {'; '.join(problems)}")
    loader = heldout_loader(data, base, val_size, max_length, batch_size=4)
    split = loader.dataset
    plain = split.with_format(None)
    ids = [pair_id(plain[int(i)]) for i in loader.sampler]
    policy = load_for_inference(adapter, base, reference_adapter=reference_adapter).model
    summary, outcomes = heldout_evaluation(policy, loader, beta)
    held_out = {**summary, **interval_summary(outcomes)}
    per_pair = {"ids": ids, **{key: "".join(map(str, v)) for key, v in outcomes.items()}}
    Path(out).write_text(json.dumps({"held_out": held_out, "per_pair": per_pair}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", help="folder of the trained adapter")
    parser.add_argument("data", help="folder whose test split is held out")
    parser.add_argument("val_size", type=int, help="held-out pairs scored")
    parser.add_argument("beta", type=float, help="beta of the implicit reward (the run's)")
    parser.add_argument("max_length", type=int, help="token budget of a pair (the run's)")
    parser.add_argument("out", help="JSON file written")
    args = parser.parse_args()
    main(args.adapter, args.data, args.val_size, args.beta, args.max_length, args.out)
