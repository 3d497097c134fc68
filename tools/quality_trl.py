"""TRL's DPOTrainer on the quality study's pairs, with the tutorial's settings (run by quality.py).

Its one argument is a JSON spec (data folder, output folder, CPU budget, pairs, max_length,
batch_size, beta, lr, lora_r). The pairs are read and rendered into TRL's conversational format by
lit-dpo's own parser, so both sides see the same prompts and replies; everything else is TRL's
default (its truncation, linear schedule, gradient checkpointing).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def main(spec_path: str) -> None:
    import torch
    from bench_trl import train_as_lit_dpo_does
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from lit_dpo.data.pairs import extract_pair
    from lit_dpo.models.policy import nf4_config
    from lit_dpo.sources import DEFAULT_MODEL, resolve_model

    spec = json.loads(Path(spec_path).read_text())
    rows = [json.loads(line) for line in Path(spec["data"], "train.jsonl").read_text().splitlines()]
    random.Random(42).shuffle(rows)
    pairs = []
    for row in rows[: spec["pairs"]]:
        pair = extract_pair(row, "train", "hh-rlhf")
        pairs.append({
            "prompt": pair.prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        })
    path = resolve_model(DEFAULT_MODEL)
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=nf4_config(torch.float32), dtype=torch.float32,
        use_safetensors=True, trust_remote_code=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    out = Path(spec["out"])
    args = DPOConfig(
        output_dir=str(out.parent / "trl_output"),
        per_device_train_batch_size=spec["batch_size"],
        num_train_epochs=1,
        learning_rate=spec["lr"],
        beta=spec["beta"],
        max_length=spec["max_length"],
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        use_cpu=True,
        # TRL turns bf16 on by default; on a CPU without bf16 matmuls every step then takes ~20x
        # longer (measured: 637 s per 4-pair step at one thread). The tutorial runs fp32 on CPU.
        bf16=False,
        seed=42,
    )
    lora = LoraConfig(r=spec["lora_r"], lora_alpha=2 * spec["lora_r"], lora_dropout=0.05,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                         processing_class=tokenizer, peft_config=lora)
    # bug workarounds and fp32 adapters, not settings: TRL gets what lit-dpo gets (bench.py)
    train_as_lit_dpo_does(trainer.model)
    stopped = {"by_budget": False}

    class Budget(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if time.process_time() >= spec["budget"]:
                stopped["by_budget"] = True
                control.should_training_stop = True

    trainer.add_callback(Budget())
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    (out / "trl_run.json").write_text(json.dumps({
        "steps": trainer.state.global_step,
        "stopped_by_budget": stopped["by_budget"],
        "train_cpu_s": round(time.process_time(), 1),
        "chosen_logps_first_last": [history[0].get("logps/chosen"), history[-1].get("logps/chosen")]
        if history else None,
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="the JSON spec quality.py writes")
    main(parser.parse_args().spec)
