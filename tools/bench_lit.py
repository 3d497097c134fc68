"""The lit-dpo side of the bench (tools/bench.py): its product path, measured in its own process."""

from __future__ import annotations

from bench_measure import MemoryPhases, StepClock
from bench_model import starting_adapter
from bench_work import data_kwargs


def run_lit(spec: dict) -> dict:
    from functools import partial

    import torch
    from lightning import Callback, Trainer

    from lit_dpo.data.datamodule import PreferenceDataModule
    from lit_dpo.train.module import DPOModule

    phases = MemoryPhases.start(spec)
    clock = StepClock(spec["warmup"], spec["gpu"], phases)
    seen = []
    kl_means = []
    if "kl_ids" in spec:
        from lit_dpo.train import unpaired_step

        baseline = unpaired_step.kl_baseline

        def recorded_baseline(policy_kl, reference_kl, gather=None):
            kl_means.append(float((policy_kl - reference_kl).detach().mean()))
            return baseline(policy_kl, reference_kl, gather)

        unpaired_step.kl_baseline = recorded_baseline

    class Measure(Callback):
        def setup(self, trainer, pl_module, stage):
            if phases:
                phases.mark("data: pairs tokenized")

        def on_fit_start(self, trainer, pl_module):
            if phases:
                phases.mark("model: loaded, 4-bit, LoRA")
            starting_adapter(pl_module.policy, spec["seed"])

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["pair_index"].tolist())
            clock.step_start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.loss(outputs["loss"].item())
            clock.step_end()

    # DPOModule's settings by dotted key, as --lit gives them (model.objective.beta=...)
    settings = {
        "load.quantization": "nf4",
        "load.compute_dtype": spec["compute_dtype"],
        "lora.r": spec["lora_r"],
        "lora.alpha": spec["lora_alpha"],
        "lora.dropout": 0.0,
        "lora.target_modules": spec["target_modules"],
        "efficiency.gradient_checkpointing": spec["gradient_checkpointing"],
        "objective.beta": spec["beta"],
        "optimization.lr_schedule": "constant",
        "optimization.warmup_ratio": 0.0,
    }
    settings.update({k[6:]: v for k, v in spec["lit"].items() if k.startswith("model.")})
    module_kwargs: dict = {
        "model": spec["model_path"],
        "optimizer": partial(torch.optim.AdamW, lr=spec["lr"], weight_decay=0.0),
    }
    for key, value in settings.items():
        group, _, name = key.partition(".")
        module_kwargs.setdefault(group, {})[name] = value
    batches = len(spec["batches"])
    trainer = Trainer(
        accelerator="gpu" if spec["gpu"] else "cpu",
        devices=1,
        precision="bf16-mixed" if spec["gpu"] else "32-true",
        max_steps=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Measure()],
    )
    trainer.fit(DPOModule(**module_kwargs), PreferenceDataModule(**data_kwargs(spec, batches)))
    if seen != spec["batches"]:
        raise SystemExit("lit-dpo trained on other batches than planned")
    if phases:
        phases.mark("fit ended")
    extra = {"first_kl_mean": kl_means[0]} if kl_means else {}
    return clock.result({"settings": {k: str(v) for k, v in settings.items()}, **extra})
