"""The TRL side of the bench (tools/bench.py): its trainers on lit-dpo's pairs and batches, in its
own process, training the same model as lit-dpo."""

from __future__ import annotations

import tempfile

from bench_measure import MemoryPhases, StepClock
from bench_model import starting_adapter


def run_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        TrainerCallback,
    )

    from lit_dpo.compat import prepare_for_kbit_training
    from lit_dpo.models.policy import nf4_config

    phases = MemoryPhases.start(spec)
    clock = StepClock(spec["warmup"], spec["gpu"], phases)
    dtype = getattr(torch, spec["compute_dtype"])
    quantization = nf4_config(dtype)
    # Loaded as lit-dpo's policy.py loads it (norms and embeddings in fp32), so both sides train
    # the same model; TRL takes an instantiated base model with a peft_config.
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_path"],
        dtype=dtype,
        quantization_config=quantization,
        device_map={"": "cuda"} if spec["gpu"] else None,
        use_safetensors=True,
        trust_remote_code=False,
    )
    if phases:
        phases.mark("model: loaded, 4-bit")
    model.config.use_cache = False
    model = prepare_for_kbit_training(
        model, spec["gradient_checkpointing"], {"use_reentrant": False}
    )
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        max_steps=len(spec["batches"]),
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=0.0,  # lit-dpo does not clip unless asked
        beta=spec["beta"],
        max_length=spec["max_length"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="sequential",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        use_cpu=not spec["gpu"],
        bf16=spec["gpu"],
        seed=spec["seed"],
    )
    kind, objective = spec["trl_objective"]
    config_class, trainer_class = trl_classes(kind)
    args = config_class(**{**common, **objective})
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"], trust_remote_code=False)
    lora = LoraConfig(
        r=spec["lora_r"],
        lora_alpha=spec["lora_alpha"],
        lora_dropout=0.0,
        target_modules=spec["target_modules"],
        task_type="CAUSAL_LM",
    )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(spec["trl_rows"]),
        processing_class=tokenizer,
        peft_config=lora,
    )
    if phases:
        phases.mark("DPOTrainer: LoRA, pairs tokenized")
    for i, expected in enumerate(spec["ids"] if kind in ("dpo", "kto") else []):
        got = trainer.train_dataset[i]
        if any(got[k] != expected[k] for k in expected):
            raise SystemExit(f"TRL tokenized pair {i} differently from lit-dpo")
    if kind == "kto":
        # lit-dpo's KL rows instead of TRL's in-batch rotation (see kto_rows)
        dataset = trainer.train_dataset.remove_columns("KL_completion_ids")
        trainer.train_dataset = dataset.add_column("KL_completion_ids", spec["kl_ids"])
    train_as_lit_dpo_does(trainer.model)
    starting_adapter(trainer.model, spec["seed"])

    compute_loss = trainer.compute_loss

    def recorded_loss(model, inputs, *args, **kwargs):
        out = compute_loss(model, inputs, *args, **kwargs)
        if model.training:
            clock.loss((out[0] if isinstance(out, tuple) else out).item())
        return out

    trainer.compute_loss = recorded_loss
    kl_logps = []  # KTO: the policy's, then the reference's KL-row log-probs of each step
    if kind == "kto":
        compute_kl_logps = trainer._compute_kl_logps

        def recorded_kl_logps(model, batch):
            logps = compute_kl_logps(model, batch)
            kl_logps.append(logps.detach().float())
            return logps

        trainer._compute_kl_logps = recorded_kl_logps

    class Measure(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.step_start()

        def on_step_end(self, args, state, control, **kwargs):
            clock.step_end()

    trainer.add_callback(Measure())
    trainer.train()
    if phases:
        phases.mark("fit ended")
    extra = {"first_kl_mean": float((kl_logps[0] - kl_logps[1]).mean())} if kl_logps else {}
    return clock.result(extra)


def trl_classes(kind: str) -> tuple[type, type]:
    """TRL's config and trainer classes for ``dpo``, ``cpo`` (SimPO, CPO), ``orpo`` or ``kto``."""
    if kind == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if kind == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer


def train_as_lit_dpo_does(model) -> None:
    """TRL's QLoRA model set to train as lit-dpo's does: fp32 LoRA weights (TRL makes them bf16,
    which a CPU without bf16 matmuls runs many times slower) and the 4-bit kernel that keeps its
    backward after a no-grad pass (a bitsandbytes bug on AVX512-BF16 CPUs; see
    lit_dpo/models/policy.py). Used by this bench and by quality_trl.py."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
