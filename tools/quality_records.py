"""The quality study's recorded runs (``tools/quality_results.jsonl``): select, pool, compare.

One JSON line per run. A line recorded since 2026-12-06 keeps its per-pair results under
``per_pair``: ``ids`` (a short hash of each held-out pair's tokens, ``quality_eval.pair_id``) and,
under each accuracy key of :data:`lit_dpo.stats.OUTCOME_KEYS`, a string of 0/1, one per pair.
A cross-validated setting is one line per fold (``split`` ``cv``, ``folds`` K, ``fold`` k); its
folds' pairs are pooled in fold order. A run is named ``LABEL`` or ``LABEL@SPLIT`` (``dev``,
``test``, ``cv``) when the label was recorded on several splits.
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_dpo.stats import OUTCOME_KEYS, bootstrap_interval, paired_difference, wilson_interval

NAMES = {
    "logps_accuracy/reference": "log-prob accuracy, summed, reference",
    "logps_accuracy/policy": "log-prob accuracy, summed, policy",
    "logps_accuracy_per_token/reference": "log-prob accuracy, per token, reference",
    "logps_accuracy_per_token/policy": "log-prob accuracy, per token, policy",
    "rewards/accuracies": "implicit-reward accuracy",
}
# issue 27's second target: the policy's per-token log-prob accuracy against the base's
GAIN_KEYS = ("logps_accuracy_per_token/policy", "logps_accuracy_per_token/reference")
GAIN_NAME = "per-token gain over the base, paired"


def load(path: Path) -> list[dict]:
    """Every recorded run, in the order they ran."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def on_folds(records: list[dict], folds: list[int] | None) -> list[dict]:
    """The recorded lines less the cross-validation folds not in ``folds`` (all of them when
    ``folds`` is None): a comparison on the folds a setting was not chosen on, or on the folds
    every setting has run."""
    if folds is None:
        return records
    return [r for r in records if r["split"] != "cv" or r["fold"] in folds]


def select(records: list[dict], name: str) -> list[dict]:
    """The lines of the run ``name`` (``LABEL`` or ``LABEL@SPLIT``): the latest line of a single
    split, or the latest line of each fold of the latest cross-validation of that label.

    Raises:
        SystemExit: no such run, or the label is on several splits and ``@SPLIT`` is missing.
    """
    label, _, split = name.partition("@")
    found = [r for r in records if r["label"] == label and (not split or r["split"] == split)]
    splits = sorted({r["split"] for r in found})
    if not found:
        raise SystemExit(f"quality: no recorded run {name!r} in the results file")
    if len(splits) > 1:
        raise SystemExit(f"quality: {label!r} was recorded on the splits {', '.join(splits)}; "
                         f"name one as {label}@{splits[0]}")
    if splits[0] != "cv":
        return [found[-1]]
    folds = found[-1]["folds"]
    latest = {r["fold"]: r for r in found if r["folds"] == folds}
    return [latest[k] for k in sorted(latest)]


def pooled(run: list[dict], name: str) -> dict[str, list]:
    """The pair ids and per-pair outcomes of a run's lines, concatenated in fold order.

    Raises:
        SystemExit: a line was recorded before per-pair results were kept.
    """
    if any("per_pair" not in r for r in run):
        raise SystemExit(f"quality: {name!r} was recorded without per-pair results "
                         "(before 2026-12-06); run it again to compare it")
    result: dict[str, list] = {"ids": []}
    for r in run:
        result["ids"] += r["per_pair"]["ids"]
        for key in OUTCOME_KEYS:
            result.setdefault(key, []).extend(int(c) for c in r["per_pair"][key])
    return result


def aligned(first: dict[str, list], second: dict[str, list], names: tuple[str, str]) -> dict:
    """``second``'s outcomes in the order of ``first``'s pairs.

    Raises:
        SystemExit: the two runs were not on the same pairs.
    """
    if first["ids"] == second["ids"]:
        return second
    position = {pair: i for i, pair in enumerate(second["ids"])}
    if len(position) != len(second["ids"]) or set(position) != set(first["ids"]):
        shared = len(set(first["ids"]) & set(second["ids"]))
        raise SystemExit(
            f"quality --diff: {names[0]} and {names[1]} were not on the same pairs "
            f"({len(first['ids'])} and {len(second['ids'])} pairs, {shared} shared); compare "
            "runs of one split, or of one fold set with the same max_length"
        )
    order = [position[pair] for pair in first["ids"]]
    return {key: [values[i] for i in order] for key, values in second.items()}


def shared_folds(first: list[dict], second: list[dict]) -> tuple[list[dict], list[dict], str]:
    """Two runs' lines cut to the folds both have run (a cross-validation still under way is
    compared on its finished folds), and a note naming those folds ("" for single splits).

    Raises:
        SystemExit: two cross-validations with no fold in common.
    """
    if not all(r["split"] == "cv" for r in (*first, *second)):
        return first, second, ""
    common = ({(r["folds"], r["fold"]) for r in first} & {(r["folds"], r["fold"]) for r in second})
    if not common:
        raise SystemExit(f"quality: {first[0]['label']} and {second[0]['label']} have no fold in "
                         "common; run the same --folds K --only_folds of both")
    first, second = ([r for r in run if (r["folds"], r["fold"]) in common]
                     for run in (first, second))
    folds = sorted(k for _, k in common)
    return first, second, (f", fold{'s' * (len(folds) > 1)} {', '.join(map(str, folds))} "
                           f"of {first[0]['folds']}")


def paired_runs(records: list[dict], first: str, second: str) -> tuple[dict, dict, str]:
    """The pooled per-pair outcomes of two runs on the pairs both were evaluated on, the second
    in the first's order, and the folds they share."""
    run_a, run_b, folds = shared_folds(select(records, first), select(records, second))
    a = pooled(run_a, first)
    return a, aligned(a, pooled(run_b, second), (first, second)), folds


def diff(records: list[dict], first: str, second: str) -> str:
    """Each accuracy of two runs on the same pairs and ``second - first``, with 95% intervals."""
    a, b, folds = paired_runs(records, first, second)
    lines = [f"{second} - {first} on the same {len(a['ids'])} held-out pairs{folds} (95% "
             "bootstrap intervals over pairs; a difference counts where its interval excludes 0)",
             f"{'':42}{first[:22]:>24}{second[:22]:>24}{'difference':>26}"]
    for key in OUTCOME_KEYS:
        change = paired_difference(b[key], a[key])
        verdict = ("" if change.low <= 0 <= change.high
                   else "  higher" if change.low > 0 else "  lower")
        lines.append(f"{NAMES[key]:42}{bootstrap_interval(a[key])!s:>24}"
                     f"{bootstrap_interval(b[key])!s:>24}{signed_interval(change):>26}{verdict}")
    lines.append(f"{GAIN_NAME:42}{signed_interval(base_gain(a)):>24}"
                 f"{signed_interval(base_gain(b)):>24}")
    return "\n".join(lines)


def base_gain(outcomes: dict[str, list]):
    """Per-token log-prob accuracy of the policy minus the base's on the same pairs, with its
    paired interval (the base is the run's own reference: adapters off)."""
    return paired_difference(outcomes[GAIN_KEYS[0]], outcomes[GAIN_KEYS[1]])


def signed_interval(interval) -> str:
    """A difference with its interval, signs shown: ``+0.030 [-0.009, +0.067]``."""
    return f"{interval.value:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def accuracy_interval(run: list[dict], key: str) -> tuple[float, float, float]:
    """An accuracy of a run's lines, pooled over folds, with its 95% interval: bootstrap over
    the per-pair results, or Wilson from the count for lines recorded without them."""
    if all("per_pair" in r for r in run):
        values = [int(c) for r in run for c in r["per_pair"][key]]
        return tuple(bootstrap_interval(values))
    pairs = sum(int(r["held_out"]["pairs"]) for r in run)
    hits = sum(r["held_out"][key] * r["held_out"]["pairs"] for r in run)
    return (hits / pairs, *wilson_interval(round(hits), pairs))


def runs_in_order(records: list[dict]) -> list[list[dict]]:
    """Every run once, in the order each first ran: single lines, and each cross-validation's
    latest line per fold together."""
    seen, runs = set(), []
    for r in records:
        key = (r["label"], r["split"], r.get("folds"))
        if r["split"] != "cv":
            runs.append([r])
        elif key not in seen:
            seen.add(key)
            latest = {x["fold"]: x for x in records
                      if (x["label"], x["split"], x.get("folds")) == key}
            runs.append([latest[k] for k in sorted(latest)])
    return runs


def table(records: list[dict]) -> str:
    """The results as a markdown table, one row per run (a cross-validation pooled over its
    folds), in the order they ran. Accuracies show their 95% interval in brackets."""
    head = ("| run | split | side | CPU s (budget) | steps | log-prob acc. summed ref -> policy "
            "| per token ref -> policy | reward acc. / margin | chosen ppl ref -> policy "
            "| displacement alarm | answer tokens ref -> policy |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for run in runs_in_order(records):
        r, count = run[-1], len(run)
        budget = "-" if r["budget_cpu_s"] >= 1e5 else f"{r['budget_cpu_s']:.0f}"
        split = r["split"] if count == 1 and r["split"] != "cv" else (
            f"cv {count}/{r['folds']} folds, {sum(int(x['held_out']['pairs']) for x in run)} pairs")
        cpu = sum(x["cpu_s"] for x in run) / count
        steps = [x.get("steps") for x in run]
        steps_text = steps[0] if count == 1 else (
            f"{sum(steps) / count:.0f}" if None not in steps else "-")
        margin = sum(x["held_out"]["rewards/margins"] * x["held_out"]["pairs"] for x in run) / (
            sum(x["held_out"]["pairs"] for x in run))
        alarms = [x.get("displacement_alarm") for x in run]
        alarm = "-" if None in alarms else (
            ("yes" if alarms[0] else "no") if count == 1 else f"{sum(alarms)}/{count}")
        lines.append(
            f"| {r['label']}{' (quick)' if r.get('quick') else ''} | {split} | {r['side']} "
            f"| {cpu:.0f}{' per fold' if count > 1 else ''} ({budget}) | {steps_text} "
            f"| {_change(run, 'logps_accuracy')} | {_change(run, 'logps_accuracy_per_token')} "
            f"| {_cell(accuracy_interval(run, 'rewards/accuracies'))} / {margin:.3f} "
            f"| {_perplexity(run)} | {alarm} | {_answer_tokens(r) if count == 1 else '-'} |"
        )
    return "\n".join(lines)


def versus_table(records: list[dict], names: list[str], versus: str) -> str:
    """The runs ``names`` against the run ``versus`` on the pairs both were evaluated on (for a
    cross-validation, the folds both have run), as a markdown table: the two targets of issue 27
    with their paired 95% intervals, the per-token gain of each run over its own base and its
    implicit-reward accuracy minus ``versus``'s."""
    head = ("| run | side | folds, held-out pairs | training CPU s per fold | per-token acc. base "
            "-> policy | per-token gain over the base, paired | implicit-reward accuracy "
            f"| reward acc. minus {versus.partition('@')[0]}, paired | displacement alarms |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for name in names:
        lines_of_run, lines_of_base, folds = shared_folds(select(records, name),
                                                          select(records, versus))
        run = pooled(lines_of_run, name)
        base = aligned(run, pooled(lines_of_base, versus), (name, versus))
        key = "rewards/accuracies"
        change = ("-" if name == versus else
                  signed_interval(paired_difference(run[key], base[key])))
        alarms = [x.get("displacement_alarm") for x in lines_of_run]
        first = lines_of_run[0]
        lines.append(
            f"| {first['label']} | {first['side']} | {folds.lstrip(', ') or first['split']}, "
            f"{len(run['ids'])} | {sum(x['cpu_s'] for x in lines_of_run) / len(lines_of_run):.0f} "
            f"| {sum(run[GAIN_KEYS[1]]) / len(run['ids']):.3f} -> "
            f"{_cell(bootstrap_interval(run[GAIN_KEYS[0]]))} | {signed_interval(base_gain(run))} "
            f"| {_cell(bootstrap_interval(run[key]))} | {change} "
            f"| {'-' if None in alarms else f'{sum(alarms)}/{len(alarms)}'} |")
    return "\n".join(lines)


def _cell(interval: tuple[float, float, float]) -> str:
    return f"{interval[0]:.3f} [{interval[1]:.2f}, {interval[2]:.2f}]"


def _change(run: list[dict], key: str) -> str:
    reference = accuracy_interval(run, f"{key}/reference")
    policy = accuracy_interval(run, f"{key}/policy")
    return f"{reference[0]:.3f} -> {_cell(policy)}"


def _perplexity(run: list[dict]) -> str:
    if len(run) > 1:  # a pooled perplexity needs the folds' token sums, which are not kept
        return "-"
    h = run[0]["held_out"]
    return f"{h['perplexity_chosen/reference']:.2f} -> {h['perplexity_chosen/policy']:.2f}"


def _answer_tokens(record: dict) -> str:
    if "answer_tokens/policy" not in record:
        return "-"
    return (f"{record['answer_tokens/reference']:.1f} -> {record['answer_tokens/policy']:.1f} "
            f"({record.get('answer_prompts', '?')} prompts)")


def pooled_summary(run: list[dict]) -> str:
    """A cross-validated run's pooled accuracies with their intervals, for the terminal."""
    r = run[-1]
    pairs = sum(int(x["held_out"]["pairs"]) for x in run)
    lines = [f"\n{r['label']} ({r['side']}): {len(run)} of {r['folds']} folds, {pairs} held-out "
             f"pairs pooled, {sum(x['cpu_s'] for x in run) / len(run):.0f} CPU s per fold"]
    for key in OUTCOME_KEYS:
        lines.append(f"{NAMES[key]:42}{_cell(accuracy_interval(run, key))}")
    if all("per_pair" in x for x in run):
        lines.append(f"{GAIN_NAME:42}{signed_interval(base_gain(pooled(run, r['label'])))}")
    return "\n".join(lines)
