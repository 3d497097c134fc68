"""SIGKILL while a cache is written: the tokenized splits (``datasets``' cache) and a GGUF model's
conversion into a transformers folder (``~/.cache/lit-dpo/models``).

After each kill, every file under a final name is whole and loads, and the next run does the
unfinished work again instead of reading half of it; a run after that removes what the killed one
left behind, with one line. The kills land inside the libraries' writes through
``tests/kill_inside.py`` and at lit-dpo's own rename through ``LIT_DPO_TEST_KILL_BEFORE_RENAME``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from conftest import KILL_INSIDE, REPO, subprocess_env, tiny_datamodule
from safetensors.torch import load_file

from lit_dpo.files import STAGING_MARK

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]



def _run(where: str, args: list[str], tmp: Path, kill_at: str | None = None):
    """``tests/kill_inside.py WHERE ARGS`` with its own lit-dpo and datasets caches under ``tmp``;
    the finished process (exit -9 when killed)."""
    env = subprocess_env(tmp / "cache", tmp / "datasets", kill_at=kill_at)
    done = subprocess.run([sys.executable, str(KILL_INSIDE), where, *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"exit {done.returncode}: {done.stderr[-3000:]}")
    return done


def _tokenized_caches(folder: Path) -> dict[str, list[list[int]]]:
    """{file name: chosen_ids of every row} of each tokenized split under a datasets cache; every
    cache file there is read whole on the way (a file cut short fails to load)."""
    tokenized = {}
    for path in sorted(folder.rglob("cache-*.arrow")):
        table = datasets.Dataset.from_file(str(path))
        rows = table.to_dict()  # reads every row
        if "chosen_ids" in table.column_names:
            tokenized[path.name] = rows["chosen_ids"]
    return tokenized


def _data_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["lit-dpo", "data", f"--model.model={model}", f"--data.dataset={data}",
            "--data.max_length=64", "--data.max_prompt_length=32", f"--out={out}"]


@pytest.mark.parametrize("where", ["tokenizing@3", "tokenized-cache-rename"])
def test_sigkill_while_tokenizing_leaves_no_cache_and_the_next_run_tokenizes_again(
    where, tiny_model_dir, tiny_data_dir, tmp_path
):
    args = _data_args(tiny_model_dir, tiny_data_dir, tmp_path / "report")
    assert _run(where, args, tmp_path).returncode == -signal.SIGKILL
    # killed before the train split's tokens took their cache name: none of it is there
    assert _tokenized_caches(tmp_path / "datasets") == {}
    leftovers = [p for p in (tmp_path / "datasets").rglob("tmp*") if p.is_file()]
    assert leftovers, "the kill landed outside datasets' write"

    assert _run("none", args, tmp_path).returncode == 0
    tokenized = _tokenized_caches(tmp_path / "datasets")
    # the same token ids as a fresh tokenization of the same pairs in this process
    data = tiny_datamodule(tiny_model_dir, tiny_data_dir, max_length=64, max_prompt_length=32)
    data.setup("fit")
    expected = {split: data.splits[split].with_format(None).to_dict()["chosen_ids"]
                for split in data.splits}
    assert sorted(tokenized.values()) == sorted(expected.values())
    assert len(expected["train"]) == 6


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny Llama's folder, the same model written as an f32 GGUF file)."""
    from test_export_gguf import tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_dpo.export.gguf_writer import write_model_gguf

    folder = tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_model_gguf(path, model.state_dict(), model.config, AutoTokenizer.from_pretrained(folder),
                     "f32", "tiny")
    return folder, path


def _logits(folder: Path | str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    input_ids = torch.randint(3, 320, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.parametrize(
    ("where", "kill_at"),
    [
        ("converted-tokenizer", None),  # the weights written, the tokenizer not yet
        ("none", "gguf-tiny-*"),  # the whole folder written, before it takes its name
    ],
)
def test_sigkill_during_a_gguf_conversion_leaves_no_model_folder_and_converts_again(
    where, kill_at, tiny_gguf, tmp_path
):
    folder, gguf_path = tiny_gguf
    models = tmp_path / "cache" / "models"
    killed = _run(where, ["resolve", str(gguf_path)], tmp_path, kill_at)
    assert killed.returncode == -signal.SIGKILL
    # nothing under a final name; the unfinished conversion only under its temporary name
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == []
    (staging,) = models.iterdir()
    assert STAGING_MARK in staging.name
    assert load_file(staging / "model.safetensors")  # the weights were written whole
    assert (staging / "tokenizer.json").exists() == (kill_at is not None)

    rerun = _run("none", ["resolve", str(gguf_path)], tmp_path)
    converted = Path(rerun.stdout.strip())
    assert converted.parent == models and converted.name.startswith("gguf-tiny-")
    # the unfinished folder removed, in one line
    assert [p.name for p in models.iterdir()] == [converted.name]
    line = f"lit-dpo: removed 1 unfinished file(s) left by a killed run ({models}: {staging.name})"
    assert line in rerun.stderr.splitlines()
    assert (_logits(converted) - _logits(folder)).abs().max() < 1e-5
