"""Fixtures: a tiny chat tokenizer and a tiny random Llama built from a config, all offline."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# kills a lit-dpo run inside a library's write or at a training step (see its docstring)
KILL_INSIDE = REPO / "tests" / "kill_inside.py"
# left out of a subprocess's environment: one set for this process would make Lightning in the
# child wait for an external launcher, or join the wrong process group
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

ROWS = [
    ("What is the capital of France?", "The capital of France is Paris.", "It is Lyon."),
    ("What is 2 + 2?", "2 + 2 = 4.", "I am not able to help with maths."),
    ("Name a primary colour.", "Red is a primary colour.", "Colours are hard to define, really."),
    ("How many legs has a spider?", "A spider has eight legs.", "Spiders have six legs."),
    ("What freezes at 0 C?", "Water freezes at 0 degrees Celsius.", "Nothing freezes at 0 C."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet.", "Charles Dickens wrote it."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest.", "Probably a lake."),
    ("Is the sun a star?", "Yes, the Sun is a star.", "No, the Sun is a planet."),
]


def ultrafeedback_row(
    prompt: str,
    chosen: str,
    rejected: str,
    system: str | None = None,
    scores: tuple[float, float] = (8.0, 3.0),
) -> dict:
    head = [{"role": "system", "content": system}] if system else []
    head.append({"role": "user", "content": prompt})
    chosen_turns = [*head, {"role": "assistant", "content": chosen}]
    return {
        "prompt": prompt,
        "prompt_id": str(abs(hash(prompt))),
        "chosen": chosen_turns,
        "rejected": [*head, {"role": "assistant", "content": rejected}],
        "messages": chosen_turns,
        "score_chosen": scores[0],
        "score_rejected": scores[1],
    }


def hh_rlhf_row(prompt: str, chosen: str, rejected: str) -> dict:
    """One Anthropic HH-RLHF row: two transcripts sharing the human turn."""

    def transcript(reply: str) -> str:
        return f"\n\nHuman: {prompt}\n\nAssistant: {reply}"

    return {"chosen": transcript(chosen), "rejected": transcript(rejected)}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@contextlib.contextmanager
def torch_threads(count: int):
    """Run on ``count`` torch threads, for fixtures wider than a test (``one_thread`` is per
    test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def sigint_as_found(request):
    """Put SIGINT's handler back after each test, and say which test changed it. Lightning
    ignores SIGINT while it shuts down after a KeyboardInterrupt and exits without putting it
    back (``lightning/pytorch/trainer/call.py``): harmless in a command that then ends, but in
    pytest it would leave the rest of the suite, and every child it starts, deaf to Ctrl-C. (A
    full run on 2026-12-07 named no test: a suite a shell starts as a background job ignores
    SIGINT from its start, which test_judge_page's command guards against.)"""
    handler = signal.getsignal(signal.SIGINT)
    yield
    left = signal.getsignal(signal.SIGINT)
    if left is not handler and handler is not None:
        signal.signal(signal.SIGINT, handler)
        warnings.warn(f"{request.node.nodeid} left SIGINT's handler as {left!r}; put back",
                      stacklevel=1)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads and lose much to contention on a busy 2-core box
    (a tiny fit took 26 s on two threads against 1.2 s on one; compare 32 s against 1.4 s). Opt in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A word-level ChatML tokenizer over the fixture text (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    corpus = [" ".join(row) for row in ROWS] + ["system user assistant \n You are helpful ."]
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=special))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    wrapped.chat_template = CHATML
    return wrapped


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A 2-layer, hidden-16 Llama with random weights and the tiny tokenizer, saved to a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tiny_tokenizer.bos_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """UltraFeedback-shaped train_prefs/test_prefs JSONL, one tie and one system prompt included."""
    path = tmp_path_factory.mktemp("prefs")
    train = [ultrafeedback_row(*row) for row in ROWS[:6]]
    train.append(ultrafeedback_row(*ROWS[0], system="You are helpful.", scores=(7.0, 7.0)))
    write_jsonl(path / "train_prefs.jsonl", train)
    write_jsonl(path / "test_prefs.jsonl", [ultrafeedback_row(*row) for row in ROWS[6:]])
    return path


def tiny_datamodule(model_dir: Path, data: Path, **settings):
    """The PreferenceDataModule the tiny tests use: batch 2, rows of at most 64 tokens (prompt
    32); ``settings`` override or add to these."""
    from lit_dpo.data.datamodule import PreferenceDataModule

    settings = {"batch_size": 2, "max_length": 64, "max_prompt_length": 32, **settings}
    return PreferenceDataModule(dataset=str(data), tokenizer=str(model_dir), **settings)


def tiny_fit_args(model_dir: Path, data: Path, root: Path, *extra: str) -> list[str]:
    """`lit-dpo fit` on the tiny model: 2 steps at a learning rate that visibly moves the adapter,
    one validation, CSV metrics and the adapter under ``root``."""
    return [
        "fit",
        f"--model.model={model_dir}",
        f"--data.dataset={data}",
        "--data.batch_size=2",
        "--data.max_length=64",
        "--data.max_prompt_length=32",
        "--model.optimizer=torch.optim.AdamW",
        "--model.optimizer.lr=0.01",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={root}",
        *extra,
    ]


def logged_losses(root: Path, version: str = "*") -> dict[int, float]:
    """{step: train/loss} of the metrics.csv of run ``version`` under ``root`` (``tiny_fit_args``
    logs there), or of every run: a resumed run adds its steps."""
    losses: dict[int, float] = {}
    for path in sorted(root.glob(f"lightning_logs/version_{version}/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def cli_error(args: list[str], capsys) -> str:
    """stderr of ``lit-dpo`` refusing ``args``: exit status 2 and no traceback."""
    from lit_dpo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def make_adapter(model_dir: Path, path: Path, *, r: int = 4, std: float = 0.2,
                 seed: int = 0) -> Path:
    """A saved LoRA adapter on ``model_dir`` with random lora_B, so the policy differs from the
    reference; saved with the tokenizer, as lit-dpo saves adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, std)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(path)
    return path


def plain_peft_model(model_dir: Path, adapter: Path):
    """The base 4-bit as lit-dpo loads it, with one adapter, without lit-dpo's loading code."""
    import bitsandbytes
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=nf4, dtype=torch.float32, device_map={"": "cpu"}
    )
    for module in base.modules():  # fp32 compute on every CPU, AVX512-BF16 ones included
        if isinstance(module, bitsandbytes.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return PeftModel.from_pretrained(base, str(adapter)).eval()


@dataclass(frozen=True)
class PrintedRun:
    """What a ``lit-dpo`` command run in a subprocess printed, and where it wrote."""

    stdout: str
    stderr: str
    root: Path


def subprocess_env(
    cache: Path, datasets_cache: Path | None = None, *, kill_at: str | None = None, **variables: str
) -> dict[str, str]:
    """The environment of a lit-dpo run a test starts in a subprocess: this checkout's ``lit_dpo``
    and the tests' modules on the path, one CPU thread, offline, its own lit-dpo cache folder
    ``cache`` and, with ``datasets_cache``, its own ``datasets`` cache, so that runs share no cache
    unless a test means them to.

    Args:
        cache: ``LIT_DPO_CACHE`` of the run.
        datasets_cache: ``HF_DATASETS_CACHE`` of the run; this process's when None.
        kill_at: ``$LIT_DPO_TEST_KILL_BEFORE_RENAME`` (``lit_dpo.files.kill_point``); a kill
            point of this process is never passed on.
        variables: more variables (``NODE_RANK``); this process's rank variables are left out.
    """
    from lit_dpo.files import KILL_POINT_VARIABLE

    left_out = (*RANK_VARIABLES, KILL_POINT_VARIABLE)
    env = {name: value for name, value in os.environ.items() if name not in left_out}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
        LIT_DPO_CACHE=str(cache),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    if datasets_cache is not None:
        env["HF_DATASETS_CACHE"] = str(datasets_cache)
    if kill_at:
        env[KILL_POINT_VARIABLE] = kill_at
    env.update(variables)
    return env


def run_printed(args: list[str], root: Path, cache: Path) -> PrintedRun:
    """``python -m lit_dpo ARGS`` in a subprocess, stdout and stderr each sent to a file (as in
    ``make demo > log``: progress as plain lines), on one CPU thread, with its own cache folder.
    Fails the test unless it exits 0."""
    import subprocess
    import sys

    env = subprocess_env(cache)
    root.mkdir(parents=True, exist_ok=True)
    out, err = root / "stdout.txt", root / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-m", "lit_dpo", *args], stdout=stdout, stderr=stderr, env=env
        )
    printed = PrintedRun(out.read_text(), err.read_text(), root)
    assert done.returncode == 0, printed.stderr[-3000:]
    return printed


@pytest.fixture(scope="session")
def printed_fit(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> PrintedRun:
    """``lit-dpo fit`` of the tiny model as a user runs it, in a subprocess: 2 steps, one
    validation, the reference table, and rows cut short enough that most pairs are truncated (a
    health alarm). Shared by the tests of what lit-dpo prints (test_quiet_run, test_doc_snapshots).
    """
    root = tmp_path_factory.mktemp("printed-fit")
    args = tiny_fit_args(
        tiny_model_dir,
        tiny_data_dir,
        root,
        "--data.max_length=16",
        "--data.max_prompt_length=12",
        "--model.efficiency.precompute_reference=true",
    )
    return run_printed(args, root, root / "cache")
