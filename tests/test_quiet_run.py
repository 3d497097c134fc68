"""A first run prints only what lit-dpo chose to print.

Library lines a user cannot act on (a kernel the hub would serve, Lightning's advertisements,
transformers' and torch's deprecations of calls inside peft and Lightning) are silenced at their
source by ``lit_dpo.compat.quiet_library_notices``, each by its logger or module and message; these
tests hold a real ``lit-dpo fit`` to that, and check that each filter drops its line and no other.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import run_printed

from lit_dpo import compat

REPO = Path(__file__).parents[1]

# Every line a fit may print on stderr: lit-dpo's own log lines, and the few of Lightning's that
# say something about this run. The demo's fit (configs/cpu.yaml) printed only these too
# (2026-12-06, 2 batches with data.max_length 64: the run of docs/preflight-and-health.md).
ALLOWED_STDERR = [
    # Lightning: the run's seed, the devices it found and used, why fit ended, a limit taken
    r"Seed set to \d+",
    r"GPU available: (True|False)( \(\w+\))?, used: (True|False)",
    r"TPU available: (True|False), using: \d+ TPU cores",
    r"`Trainer\.fit` stopped: `max_(steps|epochs)=\d+` reached\.",
    r"`Trainer\(limit_\w+_batches=[\d.]+\)` was configured so .*",
    # lit-dpo: the embedded model converted once, preparing the data
    r"converting \S+: \d/3 .*",
    r"tokenizing \w+: \d+ pairs( in \d+ s|: .*)?",
    r"\S+ \(\w+\): \d+ rows -> \d+ pairs; dropped .*; \d+ truncated to max_length=\d+/"
    r"max_prompt_length=\d+",
    # lit-dpo: the model and its reference
    r"\S+: trainable params: [\d,]+ of [\d,]+ \([\d.]+%\)",
    r"reference: .*",
    r"reference log-probs( \(\w+\))?: .*",
    # lit-dpo: what the run found and wrote
    r"health alarm at step \d+: .*",
    r"samples at step \d+ \(.*\): .*",
    r"adapter saved to \S+",
    r"training curves written to \S+",
]


def unexpected_lines(stderr: str) -> list[str]:
    allowed = re.compile("|".join(f"(?:{pattern})" for pattern in ALLOWED_STDERR))
    return [line for line in stderr.splitlines() if line.strip() and not allowed.fullmatch(line)]


def test_the_allow_list_refuses_the_lines_a_newcomer_saw():
    """Guards the test itself: the lines the 0.2 demo opened with are not allowed."""
    seen = [
        "Failed to load CPU gemm_4bit_forward from kernels-community: ... Please make sure you "
        "already `pip install kernels` and the kernels >= 0.11.1",
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
        "/x/transformers/modeling_utils.py:3314: FutureWarning: `is_gradient_checkpointing` is "
        "deprecated and will be removed in v6. Use `is_activation_checkpointing` instead.",
        "  warnings.warn(",
        "/x/lightning/pytorch/utilities/_pytree.py:21: `isinstance(treespec, LeafSpec)` is "
        "deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead.",
        "Loading `train_dataloader` to estimate number of stepping batches.",
    ]
    assert unexpected_lines("\n".join(seen)) == seen


def test_a_fit_prints_on_stderr_only_lines_lit_dpo_chose(printed_fit):
    assert "reference log-probs (train)" in printed_fit.stderr  # the run did its work
    assert "health alarm at step" in printed_fit.stderr  # and a warning of lit-dpo's shows
    assert unexpected_lines(printed_fit.stderr) == []


def test_each_quieted_warning_is_dropped_and_no_other(tiny_model_dir):
    """The filters of QUIET_WARNINGS against the installed libraries' own calls."""
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.is_gradient_checkpointing  # noqa: B018  (what peft's PeftModel reads)
        model.gradient_checkpointing_enable()  # what prepare_model_for_kbit_training calls
        _tree_flatten(1)  # what Lightning's CombinedLoader calls
    before = [str(w.message) for w in caught]
    assert len(before) == 3 and all("deprecated" in message for message in before), before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compat.quiet_library_notices()
        model.is_gradient_checkpointing  # noqa: B018
        model.gradient_checkpointing_enable()
        _tree_flatten(1)
        message = "`is_gradient_checkpointing` is deprecated, from elsewhere"
        warnings.warn(message, FutureWarning, stacklevel=1)
    # only the one raised outside the quieted modules is left
    assert [str(w.message) for w in caught] == [
        "`is_gradient_checkpointing` is deprecated, from elsewhere"
    ]


def test_enable_activation_checkpointing_warns_nothing(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compat.enable_activation_checkpointing(model, {"use_reentrant": False})
    assert caught == []
    assert model.is_activation_checkpointing


def test_lightning_tips_are_dropped_and_its_other_lines_are_not(caplog):
    compat.quiet_library_notices()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try litlogger")
        logger.info("💡 Tip: For seamless cloud uploads and versioning, try litmodels")
        logger.info("Loading `train_dataloader` to estimate number of stepping batches.")
        logger.info("GPU available: False, used: False")
    assert [record.getMessage() for record in caplog.records] == [
        "GPU available: False, used: False"
    ]


# bitsandbytes logs its line when it is imported on a CPU with AVX512-BF16. This machine may not
# have one, so the script re-runs the import of its CPU kernels as if it had: once before
# lit_dpo is imported (the line must show: the test is not vacuous), once after.
BITSANDBYTES_SCRIPT = """
import importlib, logging, warnings
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.name, record.getMessage()))
logging.getLogger().addHandler(Keep())
warnings.simplefilter("ignore")  # re-registering its kernels makes torch warn
import bitsandbytes.functional
import bitsandbytes.backends.cpu.ops as ops
bitsandbytes.functional.has_avx512bf16 = lambda: True
def reimport():
    records.clear()
    importlib.reload(ops)
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("another bitsandbytes line")
    return [message[:60] for name, message in records]
print(reimport())
import lit_dpo
print(reimport())
"""


def test_the_bitsandbytes_kernel_notice_is_dropped_and_its_other_lines_are_not():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", BITSANDBYTES_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = done.stdout.strip().splitlines()
    assert "Failed to load CPU gemm_4bit_forward" in before
    assert "Failed to load CPU gemm_4bit_forward" not in after
    assert "Skipping publisher trust check" not in after
    assert "another bitsandbytes line" in after


@pytest.mark.parametrize("logger, start", compat.QUIET_LOG_RECORDS)
def test_the_dropped_log_lines_are_still_in_the_installed_libraries(logger, start):
    """A release that rewords a line would let it through unseen: each dropped message start must
    still be in the source of the package that logs it (the warnings are raised for real above)."""
    import importlib.util

    spec = importlib.util.find_spec(logger.split(".")[0])
    assert spec is not None and spec.submodule_search_locations, logger
    found = any(
        start.split("'")[0] in path.read_text(errors="ignore")
        for folder in spec.submodule_search_locations
        for path in Path(folder).rglob("*.py")
    )
    assert found, f"{logger} no longer logs {start!r}; update lit_dpo/compat.py"


def test_compare_into_a_log_file_draws_no_library_bar(printed_fit, tmp_path):
    """compare, serve and export load the model outside fit's ProgressLog: into a file, the
    "Loading weights" bar of transformers would leave a line of frames per load."""
    adapter = next(printed_fit.root.rglob("adapter_config.json")).parent
    printed = run_printed(
        [
            "compare",
            f"--adapter={adapter}",
            "--max_new_tokens=2",
            "--max_length=64",
            "--val_size=0",
            f"--out={tmp_path / 'compare'}",
        ],
        tmp_path,
        tmp_path / "cache",
    )
    assert (tmp_path / "compare" / "compare.json").is_file()  # the compare did its work
    assert "Loading weights" not in printed.stderr
    assert "\r" not in printed.stderr
