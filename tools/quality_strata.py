#!/usr/bin/env python3
"""Recorded runs' held-out accuracy on two kinds of pair: chosen reply declines, or answers.

HH-harmless's chosen replies are often hedges and refusals. A setting that learns to prefer
declining ranks such pairs better without ranking the rest any better, and its answers then
evade (docs/quality.md). This splits the held-out pairs by their chosen reply, declining (a
refusal or an evasive non-answer, by ``lit-dpo compare``'s answer health: ``declined``) or
answering, and gives each run's accuracy on each kind, and its paired difference from a
baseline run on the same pairs, with 95% bootstrap intervals.

The pairs are found again from the development data: each fold's held-out part is rebuilt as
``quality.py --folds K`` builds it (or ``test.jsonl`` of ``--split dev``'s folder), tokenized as
the evaluation tokenizes it, and matched to the recorded pair ids.

    python tools/quality_strata.py tutorial@cv kto-lr2.5e-4@cv recipe@cv --versus tutorial@cv
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tools"), str(REPO)]
import quality  # noqa: E402  (sibling scripts, found through sys.path)
import quality_records as records  # noqa: E402
from quality_eval import pair_id  # noqa: E402

from lit_dpo.compare.health import answer_health  # noqa: E402
from lit_dpo.sources import DEFAULT_MODEL  # noqa: E402
from lit_dpo.stats import bootstrap_interval, paired_difference  # noqa: E402

KINDS = ("declines", "answers")
KEY = "rewards/accuracies"


def chosen_declines(folder: Path, base: str, max_length: int) -> dict[str, bool]:
    """Pair id -> whether its chosen reply declines, for the held-out pairs of ``folder``
    (its ``test.jsonl``), tokenized as ``quality_eval`` tokenizes them."""
    from lit_dpo.compare.command import heldout_loader
    from lit_dpo.data.datamodule import load_tokenizer

    rows = sum(1 for line in (folder / "test.jsonl").read_text().splitlines() if line.strip())
    split = heldout_loader(str(folder), base, rows, max_length, batch_size=4).dataset
    tokenizer = load_tokenizer(base)
    kinds = {}
    for row in split.with_format(None):
        reply = tokenizer.decode(row["chosen_ids"], skip_special_tokens=True).strip()
        kinds[pair_id(row)] = answer_health(reply).declined
    return kinds


def strata_table(runs: dict[str, dict], base_name: str, declines: dict[str, bool],
                 key: str = KEY) -> str:
    """Markdown: per run, ``key`` on each kind of pair with its interval and, beside the
    baseline's, the paired difference. ``runs`` maps names to pooled per-pair outcomes in the
    same pair order (``quality_records.aligned``); ``declines`` maps pair ids to the kind."""
    ids = runs[base_name]["ids"]
    kind_of = [declines[pair] for pair in ids]
    counts = {kind: sum(d == (kind == "declines") for d in kind_of) for kind in KINDS}
    header = ["run"]
    for kind in KINDS:
        header += [f"chosen {kind} ({counts[kind]} pairs)", f"minus {base_name}, paired"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, outcomes in runs.items():
        cells = [name]
        for kind in KINDS:
            keep = [i for i, d in enumerate(kind_of) if d == (kind == "declines")]
            values = [outcomes[key][i] for i in keep]
            cells.append(f"{bootstrap_interval(values)}")
            if name == base_name:
                cells.append("-")
            else:
                base = [runs[base_name][key][i] for i in keep]
                cells.append(records.signed_interval(paired_difference(values, base)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="recorded runs (LABEL@SPLIT)")
    parser.add_argument("--versus", required=True, metavar="BASE", help="the baseline run")
    parser.add_argument("--results", type=Path, default=quality.RESULTS)
    parser.add_argument("--data", type=Path, default=quality.DATA,
                        help="the development data the runs were cut from")
    parser.add_argument("--key", default=KEY, choices=list(records.NAMES),
                        help="the accuracy to split")
    parser.add_argument("--only_folds", type=int, nargs="+", metavar="K",
                        help="these cross-validation folds only (default: all that every run has)")
    args = parser.parse_args(argv)
    recorded = records.on_folds(records.load(args.results), args.only_folds)
    base_run = records.select(recorded, args.versus)
    # every run cut to the folds all of them share, so that every row is on the same pairs
    for name in args.runs:
        base_run, _, _ = records.shared_folds(base_run, records.select(recorded, name))
    base = records.pooled(base_run, args.versus)
    runs, lines = {args.versus: base}, list(base_run)
    for name in args.runs:
        if name != args.versus:
            _, run, _ = records.shared_folds(base_run, records.select(recorded, name))
            runs[name] = records.aligned(base, records.pooled(run, name), (args.versus, name))
            lines += run
    # the tokenizer of the compared runs: a lit-dpo line records its model; TRL's runs
    # (quality_trl.py) train the embedded default
    model = next((r["settings"]["model"]["model"] for r in lines
                  if "model" in r.get("settings", {})), DEFAULT_MODEL)
    declines: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for line in base_run:
            if line["split"] == "cv":
                folder = quality.prepare_folds(args.data, line["folds"], line["fold"],
                                               Path(scratch))
            else:
                folder = quality.prepare_data(args.data, line["split"], Path(scratch))
            declines.update(chosen_declines(folder, model, line["max_length"]))
    missing = [pair for pair in base["ids"] if pair not in declines]
    if missing:
        print(f"quality_strata: {len(missing)} recorded pairs are not in {args.data} as rebuilt "
              "(other data, or another tokenizer or max_length)", file=sys.stderr)
        return 2
    folds = ", ".join(str(r.get("fold", r["split"])) for r in base_run)
    print(f"{records.NAMES[args.key]} by the kind of chosen reply, on the {len(base['ids'])} "
          f"held-out pairs of {folds} (95% bootstrap intervals; paired differences)\n")
    print(strata_table(runs, args.versus, declines, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
