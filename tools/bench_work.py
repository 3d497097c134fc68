"""The bench's work (tools/bench.py): which pairs, in which batches, on both sides.

lit-dpo's data module plans its own first batches; the same pairs become TRL's conversational
rows in that order, with their token ids, so that the TRL side can check it tokenized them alike.
"""

from __future__ import annotations

from itertools import islice

from bench_kto import kto_rows


def plan_work(settings: dict) -> dict:
    """lit-dpo's own first batches, and the same pairs as TRL rows."""
    from lit_dpo.data.batches import encode_pair
    from lit_dpo.data.datamodule import PreferenceDataModule
    from lit_dpo.data.loading import load_source
    from lit_dpo.data.pairs import detect_format, extract_pair
    from lit_dpo.errors import DataError

    batches_needed = settings["warmup"] + settings["steps"]
    data = PreferenceDataModule(**data_kwargs(settings, batches_needed))
    data.setup("fit")
    split = data.splits["train"]
    batches = [b["pair_index"].tolist() for b in islice(data.train_dataloader(), batches_needed)]
    if len(batches) < batches_needed:
        raise SystemExit(f"only {len(split)} pairs: fewer than {batches_needed} batches")

    raw = load_source(settings["dataset"]).splits[data.split_names["train"]]
    row_format = detect_format(raw[0], settings["dataset"])
    by_ids = {}
    for i, row in enumerate(raw):
        try:
            pair = extract_pair(row, f"row {i}", row_format)
        except DataError:
            continue
        encoded = encode_pair(
            pair, data.tokenizer, settings["max_length"], settings["max_prompt_length"]
        )
        by_ids[_key(encoded)] = (pair, encoded["truncated"])

    order = [index for batch in batches for index in batch]
    if data.unpaired["train"]:
        return {"batches": batches, "pairs": len(order), **kto_rows(settings, split, order, by_ids)}
    ids, rows = [], []
    for index in order:
        pair_ids = {k: split[index][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        pair, truncated = by_ids[_key(pair_ids)]
        if truncated:
            # TRL truncates prompt + reply from the end; lit-dpo keeps the prompt's end
            raise SystemExit("a benchmark pair is truncated: raise --max-length")
        ids.append(pair_ids)
        rows.append(
            {
                "prompt": pair.prompt,
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }
        )
    timed = ids[settings["warmup"] * settings["batch_size"] :]
    return {
        "batches": batches,
        "pairs": len(order),
        "ids": ids,
        "trl_rows": rows,
        "timed_pairs": len(timed),
        # real tokens of the 2 sequences of each pair, padding excluded: the same for both sides
        "timed_tokens": sum(
            2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in timed
        ),
    }


def data_kwargs(settings: dict, batches: int) -> dict:
    kwargs = {
        "dataset": settings["dataset"],
        "tokenizer": settings["model_path"],
        "train_size": batches * settings["batch_size"],
        "val_size": 1,
        "batch_size": settings["batch_size"],
        "max_length": settings["max_length"],
        "max_prompt_length": settings["max_prompt_length"],
        "seed": settings["seed"],
    }
    kwargs.update({k[5:]: v for k, v in settings["lit"].items() if k.startswith("data.")})
    return kwargs


def _key(encoded: dict) -> tuple:
    return tuple(tuple(encoded[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids"))
