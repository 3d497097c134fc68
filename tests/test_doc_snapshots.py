"""The docs show what the code prints, and the code the docs describe.

- Every printed example (a fenced block with no language) of README.md and docs/*.md either
  follows a ``<!-- snapshot: block|lines ... -->`` line, and is compared here with what a real
  ``lit-dpo fit`` of the tiny model prints (``printed_fit``), numbers, durations and paths masked,
  or is an excerpt of a dated measurement: its section, up to the block, gives a date and the
  command (``lit-dpo ...``, ``make ...``, ``tools/...``). ``block``: the masked lines appear
  together and in order in the run's stdout or stderr (the run summary: a row missing from the
  docs fails); ``lines``: each appears, in order, other lines between them (progress lines).
- README's T4 recipe states the settings of ``configs/t4.yaml``.
- The developer guide's layout names every module and tool, and its layer table is
  ``tests/test_layout.py``'s ``LAYERS``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w-]*)")
MARKER = re.compile(r"^<!-- snapshot: (block|lines)\b")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
COMMAND = re.compile(r"lit-dpo \w|make \w|tools/\w+\.py|python -m lit_dpo")

# a path: from the root, home or runs/, or a relative one with a folder (data/train.jsonl)
PATH = re.compile(r"(?<![\w/.])(?:~?/|[A-Za-z_][\w.-]*/)[^\s,:]*")
DURATION = re.compile(r"\b\d+ h \d+ min\b|\b\d+ min \d+ s\b|\b\d+ s\b")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def mask(line: str) -> str:
    """A printed line with what differs between runs masked: paths (a list of them is one),
    durations, numbers and the plural after them; runs of spaces are one."""
    line = PATH.sub("<path>", line)
    line = re.sub(r"<path>(?:, <path>)+", "<path>", line)
    line = DURATION.sub("<time>", line)
    line = NUMBER.sub("N", line)
    line = re.sub(r"\bN (\w+?)(?:es|s)\b", r"N \1", line)  # 1 batch, 2 batches
    return " ".join(line.split())


def blocks(path: Path) -> list[tuple[int, str | None, list[str], str]]:
    """(first line, snapshot mode or None, lines, the section's text before it) of each fenced
    block with no language; the section starts at the last heading above the block."""
    found, lines = [], path.read_text().splitlines()
    section: list[str] = []
    inside, language, start, body = False, "", 0, []
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if inside:
            if fence and not fence.group(2):
                if not language:
                    previous = lines[start - 3] if start >= 3 else ""
                    mode = MARKER.match(previous)
                    found.append((start, mode and mode.group(1), body, "\n".join(section)))
                section += body
                inside = False
            else:
                body.append(line)
            continue
        if fence:
            inside, language, start, body = True, fence.group(2), number + 1, []
            continue
        if line.startswith("#"):
            section = []
        section.append(line)
    return found


PRINTED = [
    pytest.param(path, start, mode, body, section, id=f"{path.name}:{start}")
    for path in DOCS
    for start, mode, body, section in blocks(path)
]
SNAPSHOTS = [p for p in PRINTED if p.values[2]]


def test_the_masks_hide_what_differs_between_runs_and_keep_the_rest():
    assert mask("  wall time     5 min 40 s") == mask("wall time 3 s") == "wall time <time>"
    assert mask("reports /tmp/a/fit_metrics.json, /tmp/a/b/metrics.csv") == "reports <path>"
    assert mask("step 1/2 (50%) | loss 0.6931 | margin -0.042") == (
        "step N/N (N%) | loss N | margin N"
    )
    assert mask("validation at step 2: 1 batch") == mask("validation at step 6: 2 batches")
    assert mask("health alarm at step 0: train: 6 of 6") != mask("health alarm at step 0: val:")


def test_the_docs_hold_snapshots_of_the_run_summary_a_health_line_and_progress():
    firsts = {mask(p.values[3][0]) for p in SNAPSHOTS}
    assert {
        "run summary",
        "training: N optimizer steps, N epoch(s), from step N; a line at most every <time>",
    } <= firsts
    assert any(first.startswith("health alarm at step") for first in firsts)


def _appears(wanted: list[str], printed: list[str], together: bool) -> bool:
    if together:
        return any(printed[i : i + len(wanted)] == wanted for i in range(len(printed)))
    position = 0
    for line in wanted:
        try:
            position = printed.index(line, position) + 1
        except ValueError:
            return False
    return True


@pytest.mark.parametrize("path, start, mode, body, section", SNAPSHOTS)
def test_a_snapshot_is_what_a_real_fit_prints(path, start, mode, body, section, printed_fit):
    wanted = [mask(line) for line in body if line.strip()]
    streams = {"stdout": printed_fit.stdout, "stderr": printed_fit.stderr}
    printed = {
        name: [mask(x) for x in text.splitlines() if x.strip()] for name, text in streams.items()
    }
    assert any(_appears(wanted, lines, mode == "block") for lines in printed.values()), (
        f"{path.name}:{start} is not what lit-dpo prints now; masked, the docs say\n"
        + "\n".join(wanted)
        + "\nand the run printed\n"
        + "\n".join(printed["stdout"] + ["--- stderr"] + printed["stderr"])
    )


@pytest.mark.parametrize(
    "path, start, mode, body, section", [p for p in PRINTED if not p.values[2]]
)
def test_any_other_printed_example_is_a_dated_excerpt_with_its_command(
    path, start, mode, body, section
):
    assert DATE.search(section) and COMMAND.search(section), (
        f"{path.name}:{start}: a printed example that no test compares: say when it was measured "
        "and with which command, or mark it as a snapshot and compare it in this file"
    )


def _find(config: dict, key: str):
    """The value of ``key`` anywhere in a parsed YAML config (settings may move into groups); a
    dotted key (``lora.r``) is a path below any mapping."""
    first, _, rest = key.partition(".")
    if rest and isinstance(config.get(first), dict):
        found = _find(config[first], rest)
        if found is not None:
            return found
    for name, value in config.items():
        if name == key:
            return value
        if isinstance(value, dict):
            found = _find(value, key)
            if found is not None:
                return found
    return None


def test_the_readme_t4_recipe_states_the_settings_of_configs_t4_yaml():
    config = yaml.safe_load((REPO / "configs" / "t4.yaml").read_text())
    text = (REPO / "README.md").read_text()
    recipe = " ".join(text.split("## The T4 recipe")[1].split("\n## ")[0].split())
    said = {
        "lora.r": r"LoRA r=(\d+)",
        "lora.alpha": r"alpha=(\d+)",
        "lora.dropout": r"dropout ([\d.]+)",
        "beta": r"beta ([\d.]+)",
        "sft_weight": r"`sft_weight: ([\d.]+)`",
        "lr": r"learning rate ([\d.e-]+)",
        "warmup_ratio": r"(\d+)% warmup",
        "gradient_clip_val": r"clipped at ([\d.]+)",
        "batch_size": r"batch (\d+) per step",
        "accumulate_grad_batches": r"(\d+) accumulation steps",
        "max_length": r"max length (\d+)",
        "max_prompt_length": r"at most (\d+) prompt tokens",
        "precision": r"`([\w-]+)` precision",
        "train_size": r"([\d,]+) training",
        "val_size": r"(\d+) validation pairs",
    }
    wrong = []
    for key, pattern in said.items():
        match = re.search(pattern, recipe)
        value = _find(config, key)
        stated = match and match.group(1).replace(",", "")
        if key == "warmup_ratio" and stated:
            stated = str(float(stated) / 100)
        if stated is None or str(value) != stated and _number(stated) != _number(value):
            wrong.append(f"{key}: configs/t4.yaml {value!r}, README {stated!r}")
    assert not wrong, wrong


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def test_the_developer_guide_layout_names_every_module_and_tool():
    guide = (REPO / "docs" / "developer-guide.md").read_text()
    layout = guide.split("## Layout")[1].split("\n## ")[0]
    named = set(re.findall(r"[\w.]+\.py|[\w]+/", layout))
    missing = [
        str(path.relative_to(REPO))
        for path in [*(REPO / "lit_dpo").rglob("*.py"), *(REPO / "tools").glob("*.py")]
        if path.name != "__init__.py" and path.name not in named
    ]
    missing += [
        str(folder.relative_to(REPO))
        for folder in (REPO / "lit_dpo").iterdir()
        if (folder / "__init__.py").exists() and f"{folder.name}/" not in named
    ]
    assert not missing, f"docs/developer-guide.md's layout does not name {missing}"


def test_the_developer_guide_layers_are_those_of_test_layout():
    from test_layout import LAYERS

    guide = (REPO / "docs" / "developer-guide.md").read_text()
    table = guide.split("## Import layers")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", table, re.MULTILINE)
    in_guide = {int(layer): set(re.findall(r"`([\w.]+)`", names)) for layer, names in rows}
    in_test = {layer: {name.removeprefix("lit_dpo.") for name in names} for layer, names in LAYERS}
    assert in_guide == in_test
