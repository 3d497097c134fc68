"""What the bench prints (tools/bench.py): the table of runs, the summary lines, the model FLOPs
utilisation on a GPU and, with ``--breakdown``, where each side's peak memory went."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

# Dense bf16 peaks (TFLOPS) by device name, for the model FLOPs utilisation in --gpu mode.
BF16_PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "T4": 65.0,  # fp16: the T4 has no bf16
}


def model_flops_per_pair(config: dict, lengths: list[int]) -> float:
    """FLOPs of the plain DPO computation on one pair's two sequences of ``lengths`` tokens.

    Policy forward (2 per weight and token), its backward to the inputs (2 more: the base is
    frozen, the LoRA weight gradients are negligible) and the reference forward (2): 6 per weight
    and token, plus causal attention. Recomputation (checkpointing) is not counted, and neither is
    work a technique skips: this is the work of the task, so skipping some raises the figure.
    """
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q = config["num_attention_heads"] * head_dim
    kv = config["num_key_value_heads"] * head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * config["intermediate_size"]
    weights = layers * per_layer + config["vocab_size"] * hidden
    total = 0.0
    for n in lengths:
        attention = 2 * 2 * layers * q * n * n / 2  # QK^T and AV, causal half
        total += 3 * (2 * weights * n + attention)
    return total


def report(
    settings: dict,
    results: list,
    peak_tflops: float | None,
    out: Path | None,
    families: Iterable[str],
) -> None:
    """The table, the summary line of the first lit-dpo run against TRL, and one of each objective
    family in ``families`` that ran on both sides."""
    rows = {}
    for label, spec, r in results:
        rows[label] = {
            "pairs/s": spec["timed_pairs"] / r["timed_s"],
            "tokens/s": spec["timed_tokens"] / r["timed_s"],
            "cpu s/pair": r["timed_cpu_s"] / spec["timed_pairs"],
            "peak GB": r["peak_bytes"] / 1e9,
            "first loss": r["first_loss"],
            "setup s": r["setup_s"],
            "wall s": r["wall_s"],
        }
        if settings["gpu"]:
            rows[label]["MFU %"] = _mfu(settings, spec, r, peak_tflops)
    columns = list(next(iter(rows.values())))
    print("\n| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, row in rows.items():
        cells = ["-" if v is None else f"{v:.4g}" for v in row.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = {label: r for label, _, r in results}
        out.write_text(json.dumps({"settings": settings, "rows": rows, "raw": raw}, indent=1))
    if "lit-dpo" in rows and "TRL" in rows:
        lit, trl = rows["lit-dpo"], rows["TRL"]
        print(
            f"speedup={lit['pairs/s'] / trl['pairs/s']:.3f} "
            f"memory_ratio={lit['peak GB'] / trl['peak GB']:.3f} "
            f"loss_delta={abs(lit['first loss'] - trl['first loss']):.2e}"
        )
    raw = {label: r for label, _, r in results}
    for family in families:
        lit, trl = rows.get(f"lit-dpo {family}"), rows.get(f"TRL {family}")
        if lit and trl:
            line = (
                f"{family}: speedup={lit['pairs/s'] / trl['pairs/s']:.3f} "
                f"memory_ratio={lit['peak GB'] / trl['peak GB']:.3f} "
                f"loss_delta={abs(lit['first loss'] - trl['first loss']):.2e}"
            )
            lit_kl = raw[f"lit-dpo {family}"].get("first_kl_mean")
            trl_kl = raw[f"TRL {family}"].get("first_kl_mean")
            if lit_kl is not None and trl_kl is not None:
                # the first batch's mean KL-row log-ratio before the clamp at 0: the same KL rows
                # scored alike, even where the baseline is clamped and the loss does not show it
                line += f" kl_delta={abs(lit_kl - trl_kl):.2e} (first kl mean {lit_kl:.4g})"
            print(line)


def _mfu(settings: dict, spec: dict, result: dict, peak_tflops: float | None) -> float | None:
    """Model FLOPs (of the plain computation) per second over the GPU's dense bf16 peak, in %."""
    config = json.loads((Path(settings["model_path"]) / "config.json").read_text())
    start = settings["warmup"] * settings["batch_size"]
    if "kl_ids" in spec:  # KTO: a completion and its KL row
        sequences = [
            [len(p["prompt_ids"]) + len(p["completion_ids"]), len(p["prompt_ids"]) + len(kl)]
            for p, kl in zip(spec["ids"][start:], spec["kl_ids"][start:], strict=True)
        ]
    else:
        sequences = [
            [len(p["prompt_ids"]) + len(p[s]) for s in ("chosen_ids", "rejected_ids")]
            for p in spec["ids"][start:]
        ]
    flops = sum(model_flops_per_pair(config, lengths) for lengths in sequences)
    device = result["device"]
    peak = peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device), None)
    return 100 * flops / result["timed_s"] / (peak * 1e12) if peak else None


# --- --breakdown ------------------------------------------------------------------------------


def print_breakdown(results: list) -> None:
    """Per side: the phase table, then the peak split into what each phase left resident."""
    gb = 1e9
    for label, _, r in results:
        rows = r.get("memory_phases")
        if not rows:
            continue
        print(f"\nmemory of {label} (GB; 'peak' is the most resident during the phase)")
        print("| phase | peak | resident after | of it mapped files | malloc: free kept | in use |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            heap = [
                "-" if row[k] is None else f"{row[k] / gb:.2f}" for k in ("free_held", "in_use")
            ]
            print(
                f"| {row['phase']} | {row['peak'] / gb:.2f} | {row['rss'] / gb:.2f} | "
                f"{row['file'] / gb:.2f} | " + " | ".join(heap) + " |"
            )
        print(f"  {label}: " + peak_split(rows))


def peak_split(rows: list[dict]) -> str:
    """'peak 2.54 GB in <phase> = 0.42 imports + ... + 0.61 transient in the phase'."""
    top = max(range(len(rows)), key=lambda i: rows[i]["peak"])
    parts, before = [], 0
    for row in rows[:top]:
        parts.append(f"{(row['rss'] - before) / 1e9:+.2f} {row['phase'].split(':')[0]}")
        before = row["rss"]
    parts.append(f"{(rows[top]['peak'] - before) / 1e9:+.2f} transient in the phase")
    kept = rows[top - 1] if top else rows[0]
    extra = f"; going in, {kept['file'] / 1e9:.2f} GB were mapped file pages"
    if kept["free_held"] is not None:
        extra += f" and {kept['free_held'] / 1e9:.2f} GB freed memory malloc kept"
    return (
        f"peak {rows[top]['peak'] / 1e9:.2f} GB in '{rows[top]['phase']}' = "
        + " ".join(parts)
        + extra
    )
