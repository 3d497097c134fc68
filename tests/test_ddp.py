"""Several processes: `lit-dpo fit` under DDP gives what one process with the global batch gives.

Two CPU processes over gloo, each with batch B on the 4-bit (nf4) tiny model, against one process
with batch 2B: the same pairs at every step (``PairSampler``), LoRA gradients averaged over the
ranks, so the per-step losses and the final adapter must agree up to float rounding. The run is
launched as a user launches it, ``python -m lit_dpo fit --trainer.strategy=ddp
--trainer.devices=2``, and Lightning starts rank 1 by running the same command again.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import (
    ROWS,
    make_adapter,
    subprocess_env,
    tiny_fit_args,
    ultrafeedback_row,
    write_jsonl,
)

from lit_dpo.cli import main
from lit_dpo.data.sampler import EvaluationSampler
from lit_dpo.errors import ConfigError
from lit_dpo.train import reference_table as reference

REPO = Path(__file__).parents[1]
TRAIN_KEYS = ("train/loss", "train/rewards/margins", "train/rewards/accuracies")
# equal pairs, equal maths: only the order of float sums differs between the two runs
TOLERANCE = 1e-5
KTO_KEYS = (
    "train/loss", "train/kl", "train/rewards/chosen", "train/rewards/rejected",
    "train/count/desirable", "train/count/undesirable",
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """6 train pairs (3 steps of 2) and 3 validation pairs: 2 ranks cannot split 3 evenly, so a
    repeated pair would show in the validation metrics."""
    path = tmp_path_factory.mktemp("ddp-prefs")
    write_jsonl(path / "train_prefs.jsonl", [ultrafeedback_row(*row) for row in ROWS[:6]])
    write_jsonl(path / "test_prefs.jsonl", [ultrafeedback_row(*row) for row in ROWS[5:]])
    return path


def _args(model_dir: Path, data: Path, root: Path, *extra: str) -> list[str]:
    # lora_dropout 0: the two runs would otherwise draw different dropout masks
    return tiny_fit_args(
        model_dir,
        data,
        root,
        "--model.lora.dropout=0",
        "--trainer.limit_train_batches=3",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_model_summary=false",
        *extra,
    )


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, data_dir, tmp_path_factory) -> Path:
    """The reference run: one process, batch 2."""
    root = tmp_path_factory.mktemp("one-process")
    main(_args(tiny_model_dir, data_dir, root, "--data.batch_size=2"))
    return root


def _fit_ddp(model_dir: Path, data: Path, root: Path, *extra: str, env: dict | None = None) -> str:
    """`lit-dpo fit` on 2 CPU processes with batch 1 each; returns both ranks' output."""
    args = _args(
        model_dir,
        data,
        root,
        "--data.batch_size=1",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        *extra,
    )
    env = dict(env or {})
    # a lit-dpo cache of its own beside the run, unless the test names one; subprocess_env leaves
    # out the rank variables (one left in would make Lightning wait for an external launcher)
    cache = Path(env.pop("LIT_DPO_CACHE", root.with_name(root.name + "-cache")))
    environment = subprocess_env(cache, **env)
    done = subprocess.run(
        [sys.executable, "-m", "lit_dpo", *args],
        env=environment,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:]
    return done.stdout


def _train_steps(root: Path, keys: tuple[str, ...] = TRAIN_KEYS) -> dict[int, dict[str, float]]:
    """step -> the train metrics logged at that step, from the run's metrics.csv."""
    rows = csv.DictReader((root / "lightning_logs" / "version_0" / "metrics.csv").open())
    steps: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {key: float(row[key]) for key in keys if row.get(key)}
        if values:
            steps.setdefault(int(row["step"]), {}).update(values)
    return steps


def _adapter(root: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(root / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow
def test_ddp_matches_one_process_with_the_global_batch(
    tiny_model_dir, data_dir, one_process, tmp_path
):
    output = _fit_ddp(
        tiny_model_dir,
        data_dir,
        tmp_path,
        "--trainer.callbacks+=lit_dpo.callbacks.AdapterCheckpoint",
        "--trainer.callbacks+=lit_dpo.callbacks.GenerateSamples",
        "--trainer.callbacks.max_new_tokens=4",
        "--trainer.callbacks+=lit_dpo.callbacks.PlotMetrics",
    )

    # the logged step values are the global ones: loss, margins, accuracy over both ranks' pairs
    expected, got = _train_steps(one_process), _train_steps(tmp_path)
    assert sorted(got) == sorted(expected) == [0, 1, 2]
    for step, values in expected.items():
        assert got[step] == pytest.approx(values, rel=TOLERANCE, abs=TOLERANCE), f"step {step}"
    # steps after the first move the adapter, so they test something
    assert expected[2]["train/loss"] != pytest.approx(expected[0]["train/loss"], abs=1e-3)

    # validation saw each of the 3 pairs once (a padded sampler would count one twice)
    expected_val = json.loads((one_process / "fit_metrics.json").read_text())
    got_val = json.loads((tmp_path / "fit_metrics.json").read_text())
    # what the reference was is a word, the same in both; the rest are numbers
    assert got_val.pop("reference") == expected_val.pop("reference") == "base"
    assert got_val == pytest.approx(expected_val, rel=TOLERANCE, abs=TOLERANCE)

    # the same adapter: gradients were averaged over the ranks
    expected_adapter, got_adapter = _adapter(one_process), _adapter(tmp_path)
    assert got_adapter.keys() == expected_adapter.keys()
    assert any(v.abs().max() > 1e-3 for k, v in expected_adapter.items() if "lora_B" in k)
    for name, value in expected_adapter.items():
        torch.testing.assert_close(got_adapter[name], value, rtol=1e-3, atol=1e-4, msg=name)

    # rank 0 alone writes: one final adapter, one checkpoint adapter, one of every report
    assert output.count("adapter saved to") == 1
    assert output.count("run summary") == 1
    assert output.count("held-out preference (fit)") == 1
    run_dir = tmp_path / "lightning_logs" / "version_0"
    adapters = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob("adapter_config.json"))
    assert adapters == [
        Path("adapter"),
        Path("lightning_logs/version_0/checkpoints/epoch=0-step=3.adapter"),
    ]
    assert [p.name for p in (run_dir / "samples").iterdir()] == ["step_3.md"]
    assert (run_dir / "metrics.png").is_file()
    assert not [p for p in tmp_path.rglob(".*")]  # no staging folder left behind


@pytest.mark.slow
def test_ddp_shares_one_precomputed_reference_table(
    tiny_model_dir, data_dir, one_process, tmp_path
):
    cache = tmp_path / "cache"
    _fit_ddp(
        tiny_model_dir,
        data_dir,
        tmp_path / "run",
        "--model.efficiency.precompute_reference=true",
        env={"LIT_DPO_CACHE": str(cache)},
    )
    expected, got = _train_steps(one_process), _train_steps(tmp_path / "run")
    for step, values in expected.items():
        assert got[step] == pytest.approx(values, rel=TOLERANCE, abs=TOLERANCE), f"step {step}"
    # one table per split, merged from both ranks' halves and written once
    tables = sorted((cache / "reference_logps").iterdir())
    assert len(tables) == 2 and all(t.suffix == ".pt" for t in tables)
    sizes = sorted(len(torch.load(t, weights_only=True)) for t in tables)
    assert sizes == [3, 6]


@pytest.mark.slow
def test_ddp_with_a_reference_adapter_matches_one_process(tiny_model_dir, data_dir, tmp_path):
    """Each rank carries the policy's adapter and the frozen SFT adapter; switching between them
    inside DDP's forward leaves the averaged gradients of the policy alone."""
    sft = make_adapter(tiny_model_dir, tmp_path / "sft", r=4, std=0.5, seed=1)
    reference = ("--model.load.reference=adapter", f"--model.load.reference_adapter={sft}")
    one = tmp_path / "one"
    main(_args(tiny_model_dir, data_dir, one, "--data.batch_size=2", *reference))
    _fit_ddp(tiny_model_dir, data_dir, tmp_path / "ddp", *reference)
    expected, got = _train_steps(one), _train_steps(tmp_path / "ddp")
    assert sorted(got) == sorted(expected) == [0, 1, 2]
    assert expected[0]["train/loss"] == pytest.approx(0.6931472, abs=1e-6)
    assert expected[2]["train/loss"] != pytest.approx(expected[0]["train/loss"], abs=1e-3)
    for step, values in expected.items():
        assert got[step] == pytest.approx(values, rel=TOLERANCE, abs=TOLERANCE), f"step {step}"
    expected_adapter, got_adapter = _adapter(one), _adapter(tmp_path / "ddp")
    assert got_adapter.keys() == expected_adapter.keys()
    for name, value in expected_adapter.items():
        torch.testing.assert_close(got_adapter[name], value, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.slow
def test_ddp_kto_averages_the_ranks_kl_baselines_and_matches_one_process(
    tiny_model_dir, data_dir, tmp_path
):
    """KTO under DDP: each rank estimates the KL baseline from its own KL rows, and the ranks'
    estimates are averaged before the clamp at 0, as TRL's ``gather_for_metrics(kl).mean()``;
    over equal shares that is the estimate of the global batch. So 2 processes of 2 unpaired rows
    train as one of 4: the same baselines, losses, rewards and adapter. The run starts from a
    random adapter, so that policy and reference differ from the first step (a policy equal to
    its reference has a baseline of 0 whatever is gathered): the baselines are 0.16, 0 (clamped)
    and 0.11, and with each rank keeping its own baseline the losses of step 0 differ."""
    start = make_adapter(tiny_model_dir, tmp_path / "start", r=16, std=0.5, seed=3)
    kto = ("--model.objective.loss_type=kto", "--data.unpair=true", f"--model.load.adapter={start}")
    one = tmp_path / "one"
    main(_args(tiny_model_dir, data_dir, one, "--data.batch_size=4", *kto))
    output = _fit_ddp(tiny_model_dir, data_dir, tmp_path / "ddp", *kto, "--data.batch_size=2")
    # step 2 gives each rank one kind of reply only: no rank has a margin, and that is no alarm
    assert "health alarm" not in output
    expected, got = _train_steps(one, KTO_KEYS), _train_steps(tmp_path / "ddp", KTO_KEYS)
    assert sorted(got) == sorted(expected) == [0, 1, 2]
    for step, values in expected.items():
        assert got[step] == pytest.approx(values, rel=TOLERANCE, abs=TOLERANCE), f"step {step}"
    assert any(values["train/kl"] > 1e-3 for values in expected.values()), "baselines all 0"
    expected_adapter, got_adapter = _adapter(one), _adapter(tmp_path / "ddp")
    assert got_adapter.keys() == expected_adapter.keys()
    for name, value in expected_adapter.items():
        torch.testing.assert_close(got_adapter[name], value, rtol=1e-3, atol=1e-4, msg=name)


def test_reference_table_shards_merge_into_the_whole_table():
    import datasets

    lengths = [5, 1, 3, 4, 2]
    dataset = datasets.Dataset.from_list(
        [
            {"prompt_ids": [1] * n, "chosen_ids": [2], "rejected_ids": [3], "pair_index": i}
            for i, n in enumerate(lengths)
        ]
    )

    def score(batch):  # chosen: -pair_index, rejected: -10 * pair_index
        index = batch["pair_index"].float()
        return torch.cat([-index, -10 * index])

    def collate(features):
        return {"pair_index": torch.tensor([f["pair_index"] for f in features])}

    whole = reference.compute_table(score, dataset, collate, batch_size=2)
    shards = [
        reference.compute_table(score, dataset, collate, 2, rank=rank, world_size=2)
        for rank in (0, 1)
    ]
    # each rank scores alternate pairs of the length order: balanced, and no pair twice
    assert [int((~s.isnan()).all(-1).sum()) for s in shards] == [3, 2]
    assert torch.equal(reference.merge_shards(torch.stack(shards)), whole)
    with pytest.raises(ValueError, match="exactly once"):
        reference.merge_shards(torch.stack([shards[0], shards[0]]))


def test_evaluation_sampler_gives_each_pair_to_one_rank_without_repeats():
    ranks = [list(EvaluationSampler(5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert ranks == [[0, 2, 4], [1, 3]]
    assert [len(EvaluationSampler(5, 2, r)) for r in (0, 1)] == [3, 2]
    with pytest.raises(ValueError, match="1 pairs cannot give each of 2 ranks one"):
        EvaluationSampler(1, num_replicas=2, rank=0)


def test_quant_storage_holds_4bit_weights_in_bfloat16_with_the_same_outputs(tiny_model_dir):
    from lit_dpo.models.policy import load_policy

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    outputs = {}
    for storage in (None, "bfloat16"):
        policy = load_policy(str(tiny_model_dir), quant_storage=storage, lora_dropout=0.0)
        weight = policy.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
        assert type(weight).__name__ == "Params4bit"
        assert weight.dtype == (torch.bfloat16 if storage else torch.uint8)
        with torch.no_grad():
            outputs[storage] = policy(input_ids=ids).logits
    torch.testing.assert_close(outputs["bfloat16"], outputs[None], rtol=0, atol=0)


def test_fsdp_refuses_precompute_reference_before_loading(tiny_model_dir):
    from lightning.pytorch.strategies import FSDPStrategy

    from lit_dpo.train.module import DPOModule
    from lit_dpo.train.settings import EfficiencySettings

    module = DPOModule(
        model=str(tiny_model_dir), efficiency=EfficiencySettings(precompute_reference=True)
    )
    # the strategy is checked with the device and precision, in one message (run_checks)
    strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")])
    module._trainer = SimpleNamespace(strategy=strategy, precision="32-true")
    with pytest.raises(ConfigError, match="precompute_reference does not work with the fsdp"):
        module.configure_model()
    assert module.policy is None


def test_quant_storage_needs_nf4():
    from lit_dpo.train.module import DPOModule
    from lit_dpo.train.settings import LoadSettings

    with pytest.raises(ConfigError, match="quant_storage applies to quantization nf4 only"):
        DPOModule(load=LoadSettings(quantization="none", quant_storage="bfloat16"))
