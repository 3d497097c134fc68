"""``lit-dpo data``: what is in the preference data, before any GPU hour is spent.

It reads the same config as ``fit`` and prepares the splits exactly as training would, loading
only the tokenizer. The report says how many pairs survive each filter, how long prompts and
replies are, how much ``max_length`` / ``max_prompt_length`` cut, whether chosen replies are
systematically longer than rejected ones (DPO learns that length bias readily), how much padding
batches carry with and without length grouping, and shows where each prompt ends and its completion
begins, token for token.

    lit-dpo data --config configs/cpu.yaml [--data.max_length 512] [--out runs/cpu/data_report]
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_dpo.files import write_atomically, write_text_atomically

if TYPE_CHECKING:
    from lit_dpo.cli import FitConfig

BOUNDARY = "⟦completion⟧"


def length_summary(lengths: list[int]) -> dict[str, float]:
    """min, median, 90th percentile, max and mean of a list of token counts."""
    ordered = sorted(lengths)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p90": p90,
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def padding_fraction(pair_lengths: list[tuple[int, int]], batch_size: int, grouped: bool,
                     seed: int = 0) -> float:
    """Share of padding tokens in batches of ``batch_size`` pairs.

    Each pair contributes two sequences (prompt + chosen, prompt + rejected), and a batch pads all
    of its 2B sequences to the longest one. ``grouped`` orders pairs by length first, the best
    length grouping can do; otherwise the order is a seeded shuffle, as in training.

    Args:
        pair_lengths: (prompt + chosen, prompt + rejected) kept token counts per pair.
    """
    order = list(range(len(pair_lengths)))
    if grouped:
        order.sort(key=lambda i: max(pair_lengths[i]))
    else:
        random.Random(seed).shuffle(order)
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [pair_lengths[i] for i in order[start : start + batch_size]]
        width = max(max(p) for p in batch)
        real += sum(sum(p) for p in batch)
        padded += 2 * len(batch) * width
    return 1 - real / padded


def split_statistics(encoded: Any, report: dict[str, Any], batch_size: int,
                     seed: int) -> dict[str, Any]:
    """Numbers for one prepared split (a dataset with the columns ``encode_pair`` writes)."""
    columns = encoded.with_format(None).to_dict()
    prompt = columns["prompt_tokens"]
    chosen, rejected = columns["chosen_tokens"], columns["rejected_tokens"]
    kept_prompt = [len(ids) for ids in columns["prompt_ids"]]
    kept_chosen = [len(ids) for ids in columns["chosen_ids"]]
    kept_rejected = [len(ids) for ids in columns["rejected_ids"]]
    lost = sum(full - kept for full, kept in zip(chosen + rejected, kept_chosen + kept_rejected,
                                                 strict=True))
    prompt_keys = Counter(tuple(ids) for ids in columns["prompt_ids"])
    pair_lengths = [
        (p + c, p + r) for p, c, r in zip(kept_prompt, kept_chosen, kept_rejected, strict=True)
    ]
    feedback = None
    if report.get("unpaired"):
        feedback = {k: report[k] for k in ("desirable", "undesirable", "ratio")}
    return {
        "rows": report["rows"],
        "pairs": len(prompt),
        # unpaired rows (KTO): desirable / undesirable counts; "chosen" is then each completion
        # and "rejected" its KL counterpart
        "feedback": feedback,
        "dropped": report["dropped"],
        "parts": report.get("parts", []),
        "lengths": {
            "prompt": length_summary(prompt),
            "chosen": length_summary(chosen),
            "rejected": length_summary(rejected),
        },
        "truncated_pairs": sum(columns["truncated"]),
        "truncated_prompts": sum(full > kept for full, kept in zip(prompt, kept_prompt,
                                                                   strict=True)),
        "reply_tokens_lost": lost,
        "reply_tokens_lost_share": lost / max(1, sum(chosen) + sum(rejected)),
        "duplicate_prompt_pairs": sum(n for n in prompt_keys.values() if n > 1),
        "chosen_longer_share": sum(c > r for c, r in zip(chosen, rejected, strict=True))
        / len(chosen),
        "padding": {
            "shuffled": padding_fraction(pair_lengths, batch_size, grouped=False, seed=seed),
            "length_grouped": padding_fraction(pair_lengths, batch_size, grouped=True),
        },
    }


def rendered_examples(encoded: Any, tokenizer: Any, count: int) -> list[str]:
    """Prompt and chosen completion decoded with a marker exactly at the token boundary."""
    examples = []
    for i in range(min(count, len(encoded))):
        row = encoded[i]
        prompt = tokenizer.decode(row["prompt_ids"])
        completion = tokenizer.decode(row["chosen_ids"])
        examples.append(f"{prompt}{BOUNDARY}{completion}")
    return examples


def markdown_report(source: str, settings: dict[str, Any], stats: dict[str, dict],
                    examples: dict[str, list[str]]) -> str:
    lines = [f"# Data report: {source}", ""]
    if any(s.get("feedback") for s in stats.values()):
        lines += ["Unpaired rows (KTO): 'chosen' is each completion, 'rejected' its KL "
                  "counterpart (the completion of the row before it, under this row's prompt).",
                  ""]
    lines.append(", ".join(f"{k} {v}" for k, v in settings.items()))
    for split, s in stats.items():
        lines += ["", f"## {split}", "", "| measure | value |", "|---|---|"]
        dropped = ", ".join(f"{n} {reason}" for reason, n in s["dropped"].items()) or "none"
        rows = [
            ("rows -> pairs", f"{s['rows']} -> {s['pairs']} (dropped: {dropped})"),
            ("ties dropped", s["dropped"].get("tie", 0)),
            ("pairs truncated", f"{s['truncated_pairs']} ({s['truncated_prompts']} prompts cut)"),
            ("reply tokens lost to max_length",
             f"{s['reply_tokens_lost']} ({100 * s['reply_tokens_lost_share']:.1f}%)"),
            ("pairs sharing a prompt", s["duplicate_prompt_pairs"]),
            ("chosen longer than rejected", f"{100 * s['chosen_longer_share']:.1f}% of pairs"),
            ("padding, shuffled batches", f"{100 * s['padding']['shuffled']:.1f}%"),
            ("padding, length-grouped batches", f"{100 * s['padding']['length_grouped']:.1f}%"),
        ]
        if s.get("feedback"):
            feedback = s["feedback"]
            ratio = "no undesirable rows" if feedback["ratio"] is None else (
                f"ratio {feedback['ratio']:g}")
            rows[0] = ("rows -> unpaired rows", rows[0][1])
            rows.insert(1, ("desirable / undesirable",
                            f"{feedback['desirable']} / {feedback['undesirable']} ({ratio})"))
        if len(s["parts"]) > 1:
            rows += [
                (f"from {part['dataset']} ({part['split']})",
                 f"{part['rows']} rows -> {part['pairs']} pairs")
                for part in s["parts"]
            ]
        for name, summary in s["lengths"].items():
            rows.append(
                (f"{name} tokens (min / median / p90 / max)",
                 "{min} / {median:g} / {p90} / {max}".format(**summary))
            )
        lines += [f"| {name} | {value} |" for name, value in rows]
        lines += ["", f"Where the prompt ends ({BOUNDARY} marks the first completion token):", ""]
        for example in examples[split]:
            lines += ["```", example, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_histogram(stats_lengths: dict[str, dict[str, list[int]]], path: Path) -> None:
    """One panel per split: token-length histograms of prompt, chosen and rejected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(stats_lengths), figsize=(6 * len(stats_lengths), 4),
                                squeeze=False)
    for axis, (split, lengths) in zip(axes[0], stats_lengths.items(), strict=True):
        for name, values in lengths.items():
            axis.hist(values, bins=30, alpha=0.5, label=name)
        axis.set_title(f"{split}: tokens before truncation")
        axis.set_xlabel("tokens")
        axis.set_ylabel("pairs")
        axis.legend()
    figure.tight_layout()
    write_atomically(path, lambda staging: figure.savefig(staging, dpi=100, format="png"))
    plt.close(figure)


def data_report(fit: FitConfig, out: str | None = None, examples: int = 2) -> Path:
    """Prepare the splits a fit config describes, exactly as training would (loading only the
    tokenizer), and report on them. Any fit setting may be given, e.g.
    ``--config configs/cpu.yaml --data.max_length 512``.

    Args:
        fit: the fit config (``--config`` and any ``--model.*``, ``--data.*`` override).
        out: folder for ``data_report.md`` and ``token_lengths.png``; by default
            ``<trainer.default_root_dir>/data_report``.
        examples: pairs shown rendered, token for token, per split.

    Returns:
        The report folder.
    """
    data = fit.data
    data.prepare_data()
    data.setup("fit")
    hp = data.hparams
    stats, rendered, lengths = {}, {}, {}
    for stage, split in data.splits.items():
        source_split = data.split_names[stage]
        name = f"{stage} ({source_split})"
        stats[name] = split_statistics(split, data.report[stage], hp.batch_size, hp.seed)
        rendered[name] = rendered_examples(split, data.tokenizer, examples)
        plain = split.with_format(None).to_dict()
        lengths[name] = {k: plain[f"{k}_tokens"] for k in ("prompt", "chosen", "rejected")}
    settings = {"max_length": hp.max_length, "max_prompt_length": hp.max_prompt_length,
                "batch_size": hp.batch_size, "tokenizer": hp.tokenizer}
    source = hp.dataset
    if hp.mixture:
        source = "mixture of " + ", ".join(part["dataset"] for part in hp.mixture)
    text = markdown_report(source, settings, stats, rendered)
    folder = Path(out or Path(fit.trainer.default_root_dir or ".") / "data_report")
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / "data_report.md", text)
    write_histogram(lengths, folder / "token_lengths.png")
    print(text)
    print(f"written: {folder / 'data_report.md'}, {folder / 'token_lengths.png'}")
    return folder
