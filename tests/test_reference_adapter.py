"""An SFT adapter as the DPO reference (``model.load.reference adapter``).

One 4-bit base carries two adapters: the policy's, a trainable copy of the SFT adapter, and the SFT
adapter itself, frozen, switched on for the reference pass. What a user relies on: the first step
measures the SFT model against itself (loss log 2, rewards 0), the reference never trains and
never lands in the saved adapter or a checkpoint, a resumed run continues exactly, adapters that
do not belong together are refused before anything loads, and every place that shows a reference
(validation table, ``fit_metrics.json``, run summary, compare, serve, the reference cache,
preflight) uses the reference adapter.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from conftest import ROWS, make_adapter, plain_peft_model, tiny_datamodule, tiny_fit_args
from safetensors.torch import load_file

from lit_dpo.cli import main, parse_config
from lit_dpo.compare.command import compare
from lit_dpo.data.batches import collate_pairs, encode_pair
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.errors import ConfigError
from lit_dpo.models.adapters import pair_problems
from lit_dpo.models.policy import load_policy
from lit_dpo.models.reference import REFERENCE_RECORD, write_reference_record
from lit_dpo.preflight.command import check
from lit_dpo.preflight.memory import ModelShape, lora_parameters
from lit_dpo.train import DPOModule
from lit_dpo.train.reference_table import model_fingerprint
from lit_dpo.train.settings import EfficiencySettings, LoadSettings

pytestmark = pytest.mark.usefixtures("one_thread")

LOG_2 = math.log(2)
PROMPTS = ["What is the capital of France?", "Who wrote Hamlet?", "Is the sun a star?"]


@pytest.fixture(scope="module")
def sft(tiny_model_dir, tmp_path_factory) -> Path:
    """A random SFT adapter; its nonzero lora_B makes it a model other than the base."""
    path = tmp_path_factory.mktemp("sft") / "adapter"
    return make_adapter(tiny_model_dir, path, r=4, std=0.5, seed=1)


@pytest.fixture(scope="module")
def dpo_adapter(tiny_model_dir, sft, tmp_path_factory) -> Path:
    """A policy of the SFT adapter's shape (another random draw) whose folder records the SFT
    adapter as its reference, as a fit with ``model.load.reference adapter`` writes it."""
    path = tmp_path_factory.mktemp("dpo") / "adapter"
    make_adapter(tiny_model_dir, path, r=4, std=0.5, seed=2)
    write_reference_record(path, sft)
    return path


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    pairs = [PreferencePair([{"role": "user", "content": p}], c, r) for p, c, r in ROWS[:4]]
    features = [encode_pair(p, tokenizer, max_length=64, max_prompt_length=32) for p in pairs]
    return collate_pairs(features, pad_token_id=tokenizer.pad_token_id)


def _against(adapter: Path) -> LoadSettings:
    """A policy measured against the frozen reference adapter ``adapter``."""
    return LoadSettings(reference="adapter", reference_adapter=str(adapter))


def _module(model_dir: Path, **kwargs) -> DPOModule:
    module = DPOModule(model=str(model_dir), **kwargs)
    module.configure_model()
    return module


# --- the step ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "switches",
    [{}, {"efficiency": EfficiencySettings(logps_chunk_size=None, share_prompt=False)}],
    ids=["packed-chunked", "full-logits"],
)
def test_first_step_against_the_sft_adapter_is_log_2_with_zero_rewards(
    tiny_model_dir, tiny_tokenizer, sft, switches
):
    """Policy = a trainable copy of the SFT adapter, reference = the same adapter frozen: their
    log-probs are equal, so each pair's loss is -log sigmoid(beta * 0) = log 2 and every reward
    is 0. The same policy measured against the base (adapters off), today's default, is not."""
    batch = _batch(tiny_tokenizer)
    module = _module(tiny_model_dir, load=_against(sft), **switches)
    stats = module.step_statistics(batch, "train")
    for side in ("chosen", "rejected"):
        assert torch.equal(stats[f"logps/{side}"], stats[f"reference_logps/{side}"]), side
        assert torch.equal(stats[f"rewards/{side}"], torch.zeros_like(stats[f"rewards/{side}"]))
    assert stats["loss"].item() == pytest.approx(LOG_2, abs=1e-6)

    against_base = _module(tiny_model_dir, load=LoadSettings(adapter=str(sft)), **switches)
    base_stats = against_base.step_statistics(batch, "train")
    assert torch.equal(base_stats["logps/chosen"], stats["logps/chosen"]), "same policy"
    print("per-pair losses against the base:", base_stats["losses"].tolist())
    assert (base_stats["losses"] - LOG_2).abs().max() > 1e-2
    assert base_stats["loss"].item() != pytest.approx(LOG_2, abs=1e-4)
    assert base_stats["rewards/chosen"].abs().min() > 0


def test_one_base_carries_the_policy_and_the_frozen_reference(tiny_model_dir, sft):
    """The base's weights are counted once (no second copy), the LoRA weights twice: the policy's
    trainable copy and the reference's frozen one, equal to the saved adapter."""
    plain = load_policy(str(tiny_model_dir), adapter=str(sft))
    both = load_policy(str(tiny_model_dir), reference_adapter=str(sft))

    def size(model, lora: bool) -> tuple[int, int]:
        weights = [p for n, p in model.named_parameters() if ("lora_" in n) == lora]
        weights += [b for n, b in model.named_buffers() if ("lora_" in n) == lora]
        return sum(w.numel() for w in weights), sum(w.numel() * w.element_size() for w in weights)

    assert size(both, lora=False) == size(plain, lora=False)
    plain_lora, both_lora = size(plain, lora=True), size(both, lora=True)
    assert plain_lora[0] > 0 and both_lora == (2 * plain_lora[0], 2 * plain_lora[1])

    trainable = {n for n, p in both.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in plain.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)
    saved = load_file(sft / "adapter_model.safetensors")
    reference = {n: p for n, p in both.named_parameters() if ".reference." in n}
    assert len(reference) == len(saved)
    for key, value in saved.items():
        assert torch.equal(reference[key.removesuffix(".weight") + ".reference.weight"], value)
    assert both.training, "the policy trains with its LoRA dropout on"


def test_reference_pass_is_deterministic_and_leaves_only_the_policy_trainable(
    tiny_model_dir, tiny_tokenizer, sft, tmp_path
):
    """With an SFT adapter saved with LoRA dropout 0.5, the model in train mode: the policy's copy
    drops (two passes differ), the reference never does, and after the reference pass the
    trainable weights are exactly the policy's LoRA (peft's set_adapter flips requires_grad)."""
    dropping = shutil.copytree(sft, tmp_path / "sft-dropout")
    config = json.loads((dropping / "adapter_config.json").read_text())
    (dropping / "adapter_config.json").write_text(json.dumps({**config, "lora_dropout": 0.5}))
    module = _module(
        tiny_model_dir,
        load=_against(dropping),
        efficiency=EfficiencySettings(logps_chunk_size=None, share_prompt=False),
    )
    before = {n for n, p in module.policy.named_parameters() if p.requires_grad}
    batch = _batch(tiny_tokenizer)
    torch.manual_seed(0)
    assert module.policy.training
    assert torch.equal(module._reference_logps(batch), module._reference_logps(batch))
    with torch.no_grad():
        first, second = (module.step_statistics(batch, "val")["logps/chosen"] for _ in range(2))
    assert not torch.equal(first, second)
    after = {n for n, p in module.policy.named_parameters() if p.requires_grad}
    assert after == before and before and all(".default." in n for n in before)


def _fit(model_dir, data_dir, root, steps: int = 3, **module_kwargs):
    """Trainer.fit of ``steps`` steps at a learning rate that moves the adapter; returns the
    module, the trainer and the losses of each step."""
    from lightning import Callback, Trainer

    class Losses(Callback):
        def __init__(self):
            self.values = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.values.append(outputs["loss"].item())

    torch.manual_seed(0)
    module = DPOModule(
        model=str(model_dir),
        optimizer=lambda params: torch.optim.AdamW(params, lr=0.01),
        **module_kwargs,
    )
    data = tiny_datamodule(model_dir, data_dir)
    losses = Losses()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[losses],
    )
    trainer.fit(module, data)
    return module, trainer, losses.values


def test_training_moves_the_policy_and_never_the_reference(
    tiny_model_dir, tiny_data_dir, sft, tmp_path
):
    module, trainer, losses = _fit(
        tiny_model_dir, tiny_data_dir, tmp_path, load=_against(sft)
    )
    assert losses[0] == pytest.approx(LOG_2, abs=1e-6) and losses[-1] != pytest.approx(LOG_2)
    saved = load_file(sft / "adapter_model.safetensors")
    named = dict(module.policy.named_parameters())
    moved = 0
    for key, value in saved.items():
        stem = key.removesuffix(".weight")
        assert torch.equal(named[stem + ".reference.weight"], value), key
        moved += not torch.equal(named[stem + ".default.weight"], value)
    assert moved == len(saved), "every policy LoRA weight trains"
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for n, p in named.items() if ".default." in n}
    assert all(not p.requires_grad for n, p in named.items() if ".reference." in n)


# --- fit, resume, refusals --------------------------------------------------------------------


def _train_losses(root: Path) -> dict[int, float]:
    losses = {}
    for path in sorted(root.glob("lightning_logs/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def test_fit_writes_only_the_policy_adapter_and_says_what_the_reference_was(
    tiny_model_dir, tiny_data_dir, sft, tmp_path, capsys, caplog
):
    reference = ("--model.load.reference=adapter", f"--model.load.reference_adapter={sft}")
    # a loss of log 2 is out of this range at once: an alarm to read
    alarm = ("--health.window=1", "--health.loss_range=[0.0,0.5]")
    with caplog.at_level(logging.WARNING, logger="lit_dpo.callbacks.health"):
        main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path, *reference, *alarm))
    out = capsys.readouterr().out

    adapter = tmp_path / "adapter"
    assert not (adapter / "reference").exists(), "peft saves every adapter unless told not to"
    written, original = (
        load_file(folder / "adapter_model.safetensors") for folder in (adapter, sft)
    )
    assert written.keys() == original.keys()
    assert all(not torch.equal(written[k], original[k]) for k in written), "the policy trained"
    record = json.loads((adapter / REFERENCE_RECORD).read_text())
    assert record == {"reference": "adapter", "reference_adapter": str(sft.resolve())}

    metrics = json.loads((tmp_path / "fit_metrics.json").read_text())
    assert metrics["reference"] == "adapter" and metrics["reference_adapter"] == str(sft)
    described = f"the adapter {sft} (frozen)"
    assert f"reference = {described}, policy = the trained adapter" in out
    assert f"  {'reference':34}{described}" in out  # the run summary's row
    [message] = [r.getMessage() for r in caplog.records if "health alarm" in r.getMessage()]
    assert message.startswith("health alarm at step 1: loss averaged 0.693")
    assert message.endswith(f"(reference: {described})")
    assert _train_losses(tmp_path)[0] == pytest.approx(LOG_2, abs=1e-6)

    [checkpoint] = tmp_path.glob("lightning_logs/version_0/checkpoints/*.ckpt")
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert any(".default." in k for k in state)
    assert not any(".reference." in k for k in state), "the frozen reference bloats checkpoints"


def test_an_interrupted_fit_with_a_reference_adapter_resumes_to_the_same_losses(
    tiny_model_dir, tiny_data_dir, sft, tmp_path
):
    def args(root: Path, *extra: str) -> list[str]:
        return tiny_fit_args(
            tiny_model_dir,
            tiny_data_dir,
            root,
            "--model.load.reference=adapter",
            f"--model.load.reference_adapter={sft}",
            "--trainer.limit_train_batches=1.0",
            "--trainer.max_epochs=2",
            "--trainer.num_sanity_val_steps=0",
            *extra,
        )

    main(args(tmp_path / "straight"))
    straight = _train_losses(tmp_path / "straight")
    assert sorted(straight) == list(range(6))

    run = tmp_path / "interrupted"
    stop = ("--trainer.callbacks+=test_resume.SignalAt", "--trainer.callbacks.batches=2")
    with pytest.raises(SystemExit):
        main(args(run, *stop))
    checkpoint = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert not any(".reference." in k for k in checkpoint["state_dict"])
    assert sorted(_train_losses(run)) == [0, 1]

    main(args(run, "--ckpt_path=last"))
    resumed = _train_losses(run)
    assert sorted(resumed) == sorted(straight)
    assert max(abs(resumed[s] - v) for s, v in straight.items()) < 1e-6


def test_adapters_that_do_not_belong_together_are_refused_before_loading(
    tiny_model_dir, tiny_data_dir, sft, tmp_path, capsys, monkeypatch
):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    wider = make_adapter(tiny_model_dir, tmp_path / "r8", r=8)
    narrower_targets = tmp_path / "qv"
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config).save_pretrained(
        narrower_targets
    )
    elsewhere = shutil.copytree(sft, tmp_path / "elsewhere")
    config_file = elsewhere / "adapter_config.json"
    recorded = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**recorded, "base_model_name_or_path": "org/other-model"}))

    (wide,) = pair_problems(wider, sft)
    assert "model.layers.0.mlp.gate_proj.lora_A.weight is (8, 64) against (4, 64)" in wide
    (targets,) = pair_problems(narrower_targets, sft)
    assert "only model.load.reference_adapter adapts model.layers.0.mlp.down_proj" in targets
    (base,) = pair_problems(elsewhere, sft)
    assert f"they record different bases, org/other-model and {tiny_model_dir}" in base
    assert pair_problems(sft, sft) == []

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the adapters were checked")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    with pytest.raises(ConfigError, match="is not a trained copy"):
        load_policy(str(tiny_model_dir), adapter=str(wider), reference_adapter=str(sft))
    capsys.readouterr()  # the progress bars of the adapters made above
    with pytest.raises(SystemExit) as stopped:
        main(
            tiny_fit_args(
                tiny_model_dir,
                tiny_data_dir,
                tmp_path / "run",
                f"--model.load.adapter={wider}",
                "--model.load.reference=adapter",
                f"--model.load.reference_adapter={sft}",
            )
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lit-dpo: error: model.load.adapter {wider} is not a trained copy of ")
    assert len(err.strip().splitlines()) == 1

    with pytest.raises(ConfigError, match="needs model.load.reference_adapter"):
        DPOModule(load=LoadSettings(reference="adapter"))
    with pytest.raises(ConfigError, match="reference_adapter is set but reference is base"):
        DPOModule(load=LoadSettings(reference_adapter=str(sft)))


# --- what reads the reference: compare, serve, the cache, preflight ------------------------------


def _logp(model, tokenizer, messages: list[dict], reply: str) -> float:
    """log p(reply + end-of-turn | messages), by plain log_softmax over the full sequence."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": reply}], tokenize=False
    )
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return logps.gather(-1, ids[0, 1:, None])[start - 1 :, 0].sum().item()


def test_compare_measures_against_the_reference_adapter_the_folder_records(
    tiny_model_dir, tiny_data_dir, sft, dpo_adapter, tmp_path
):
    from transformers import AutoTokenizer

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[0] + "\n")
    report = compare(
        str(dpo_adapter),
        prompts=str(prompts),
        edge_cases=False,
        dataset=str(tiny_data_dir),
        val_size=2,
        out=str(tmp_path / "out"),
        max_new_tokens=4,
        max_length=96,
        batch_size=2,
    )
    assert report.reference_adapter == str(sft.resolve())
    assert (
        f"reference = the frozen reference adapter {sft.resolve()}"
        in (tmp_path / "out" / "compare.md").read_text()
    )

    # the implicit reward, by hand, from two plain peft models: policy and SFT reference
    tokenizer = AutoTokenizer.from_pretrained(dpo_adapter)
    policy, reference = (plain_peft_model(tiny_model_dir, a) for a in (dpo_adapter, sft))
    [result] = report.results
    messages = result.case.messages
    answer = result.policy.text
    policy_logp = _logp(policy, tokenizer, messages, answer)
    reference_logp = _logp(reference, tokenizer, messages, answer)
    assert result.policy.reward == pytest.approx(0.1 * (policy_logp - reference_logp), abs=1e-4)
    with reference.disable_adapter():
        base_logp = _logp(reference, tokenizer, messages, answer)
    assert abs(base_logp - reference_logp) > 1e-2, "the SFT adapter must differ from the base"

    # held-out metrics: the numbers validate gives for the same policy and reference
    main(
        [
            "validate",
            f"--model.model={tiny_model_dir}",
            f"--model.load.adapter={dpo_adapter}",
            "--model.load.reference=adapter",
            f"--model.load.reference_adapter={sft}",
            f"--data.dataset={tiny_data_dir}",
            "--data.batch_size=2",
            "--data.max_length=96",
            "--data.max_prompt_length=48",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    validated = json.loads((tmp_path / "validate_metrics.json").read_text())
    assert validated["reference_adapter"] == str(sft)
    for key in ("logps_accuracy/reference", "rewards/accuracies", "rewards/margins"):
        assert report.heldout[key] == pytest.approx(validated[f"val/{key}"], abs=1e-4), key


def test_compare_names_a_recorded_reference_that_is_not_here(dpo_adapter, tmp_path, capsys):
    moved = shutil.copytree(dpo_adapter, tmp_path / "adapter")
    write_reference_record(moved, tmp_path / "gone")
    with pytest.raises(SystemExit):
        main(["compare", f"--adapter={moved}", "--val_size=0"])
    err = capsys.readouterr().err
    assert f"the reference adapter {tmp_path / 'gone'} ({REFERENCE_RECORD})" in err
    assert "pass --reference_adapter" in err


def test_serve_answers_reference_with_the_reference_adapter(
    tiny_model_dir, sft, dpo_adapter, tmp_path
):
    """Over real HTTP: ``reference`` answers as the SFT adapter the policy folder records (greedy
    generation in-process with plain peft), not as the base, and /health says so."""
    from test_serve import running_server
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy, reference = (plain_peft_model(tiny_model_dir, a) for a in (dpo_adapter, sft))

    def generate(model, prompt: str) -> str:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    with running_server(tmp_path / "server.log", "--adapter", str(dpo_adapter)) as server:
        health = httpx.get(f"{server.url}/health", timeout=30).json()
        assert health["reference"] == "adapter"
        assert health["reference_adapter"] == str(sft.resolve())
        differs_from_base = False
        for prompt in PROMPTS:
            answers = {}
            for name in ("policy", "reference"):
                body = {
                    "model": name,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 12,
                    "temperature": 0,
                }
                reply = server.post(body).json()
                answers[name] = reply["choices"][0]["message"]["content"]
            assert answers["policy"] == generate(policy, prompt)
            assert answers["reference"] == generate(reference, prompt)
            with reference.disable_adapter():
                differs_from_base |= answers["reference"] != generate(reference, prompt)
        assert differs_from_base, "the SFT adapter answers as the base: the test proves nothing"


def test_precomputed_tables_are_keyed_by_the_reference(
    tiny_model_dir, tiny_data_dir, sft, tmp_path, monkeypatch
):
    """A table computed for the base is never read for an adapter reference: with the base's
    tables in the cache, an adapter-reference run computes its own and trains as on the fly."""
    monkeypatch.setenv("LIT_DPO_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "cache" / "reference_logps"
    precompute = EfficiencySettings(precompute_reference=True)
    _fit(
        tiny_model_dir, tiny_data_dir, tmp_path / "a", load=LoadSettings(adapter=str(sft)),
        efficiency=precompute,
    )
    assert len(list(tables.glob("*.pt"))) == 2  # train and val
    _, _, on_the_fly = _fit(tiny_model_dir, tiny_data_dir, tmp_path / "b", load=_against(sft))
    module, _, cached = _fit(
        tiny_model_dir, tiny_data_dir, tmp_path / "c", efficiency=precompute, load=_against(sft)
    )
    assert len(list(tables.glob("*.pt"))) == 4
    assert cached[0] == pytest.approx(LOG_2, abs=1e-6)
    assert cached == pytest.approx(on_the_fly, rel=1e-5, abs=1e-6)

    # the key follows the adapter's weights: another SFT adapter of the same shape, another key
    other = make_adapter(tiny_model_dir, tmp_path / "other", r=4, std=0.5, seed=7)
    other_module = _module(tiny_model_dir, load=_against(other))
    keys = [
        model_fingerprint(m.policy.get_base_model(), {}, adapter)
        for m, adapter in ((module, None), (module, "reference"), (other_module, "reference"))
    ]
    assert len(set(keys)) == 3
    assert model_fingerprint(module.policy.get_base_model(), {}, "reference") == keys[1]


def test_preflight_counts_the_reference_adapter_as_frozen_lora_weights(
    tiny_model_dir, tiny_data_dir, sft
):
    """The SFT adapter has r 4 on the 7 projections of 2 layers: 4 * (in + out) each, fp32,
    without gradient or optimizer state; the policy's copy has its rank too, not lora_r."""
    from transformers import AutoConfig

    args = [
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tiny_data_dir}",
        "--trainer.accelerator=cpu",
    ]
    reference = ["--model.load.reference=adapter", f"--model.load.reference_adapter={sft}"]
    plain = check(parse_config(args)[0], worst_case=True)
    findings = check(parse_config([*args, *reference])[0], worst_case=True)
    weights = lora_parameters(ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir)), 4)
    assert findings.plan.reference_lora_parameters == weights
    assert findings.estimate.reference_lora == 4 * weights
    assert findings.plan.lora_r == 4 and plain.plan.lora_r == 16
    assert plain.estimate.reference_lora == 0
    assert findings.reference == f"the adapter {sft} (frozen)"
