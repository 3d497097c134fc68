"""The KTO rows of the bench (tools/bench.py ``--only kto``, ``--objectives``): lit-dpo's
unpaired rows as TRL's KTOTrainer takes them."""

from __future__ import annotations


def kto_rows(settings: dict, split, order: list[int], by_ids: dict) -> dict:
    """lit-dpo's unpaired rows (``data.unpair``) in batch ``order``, as TRL's conversational
    unpaired rows, with their token ids and each one's KL completion.

    TRL builds a row's KL completion by rotating completions within its batch of the sequential
    order; lit-dpo takes the completion of the row before it in the split (``data.unpaired``), so
    that it stays fixed under shuffling. The TRL side is handed lit-dpo's KL completions
    (``kl_ids``), so both estimate the KL baseline from the same mismatched rows.
    """
    texts = {}  # (prompt ids, completion ids) -> (prompt messages, completion text)
    for (prompt, chosen, rejected), (pair, truncated) in by_ids.items():
        if not truncated:
            texts[(prompt, chosen)] = (pair.prompt, pair.chosen)
            texts[(prompt, rejected)] = (pair.prompt, pair.rejected)
    ids, rows, kl_ids = [], [], []
    for index in order:
        row = split[index]
        key = (tuple(row["prompt_ids"]), tuple(row["chosen_ids"]))
        if key not in texts:
            # TRL truncates prompt + reply from the end; lit-dpo keeps the prompt's end
            raise SystemExit("a benchmark row is truncated (or not found): raise --max-length")
        prompt, completion = texts[key]
        ids.append({"prompt_ids": list(key[0]), "completion_ids": list(key[1])})
        kl_ids.append(list(row["rejected_ids"]))
        rows.append(
            {
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": completion}],
                "label": bool(row["label"]),
            }
        )
    timed = slice(settings["warmup"] * settings["batch_size"], None)
    return {
        "ids": ids,
        "kl_ids": kl_ids,
        "trl_rows": rows,
        "timed_pairs": len(ids[timed]),
        # a row's 2 sequences (completion, KL row), padding excluded: the same for both sides
        "timed_tokens": sum(
            2 * len(r["prompt_ids"]) + len(r["completion_ids"]) + len(kl)
            for r, kl in zip(ids[timed], kl_ids[timed], strict=True)
        ),
    }
