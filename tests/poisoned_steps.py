"""A few DPO training steps, a validation pass and a generation, printed bit for bit as JSON.

``tests/test_faults_poison.py`` runs this in fresh processes with glibc poisoning memory
(``MALLOC_PERTURB_``) and with each of lit-dpo's allocator settings, and requires the same bits:
any value that depends on memory a kernel read before anything wrote it differs between two
poison bytes. Run as ``python tests/poisoned_steps.py MODEL_DIR FREED_MEMORY [STEPS]``.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch
from conftest import ROWS as FIXTURE_ROWS

# the tiny model's own pairs (run as a script, this file's folder is on sys.path); six of them
ROWS = FIXTURE_ROWS[:6]


def bits(tensor: torch.Tensor) -> str:
    """A digest of a tensor's exact bytes (two floats equal to the last bit, or not)."""
    data = tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def run(model_dir: str, freed_memory: str, steps: int) -> dict:
    from transformers import AutoTokenizer

    from lit_dpo.data.batches import collate_pairs, encode_pair
    from lit_dpo.data.pairs import PreferencePair
    from lit_dpo.models.generate import generate_batch_ids
    from lit_dpo.train.module import DPOModule
    from lit_dpo.train.settings import EfficiencySettings

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    module = DPOModule(
        model=model_dir, efficiency=EfficiencySettings(return_freed_memory=freed_memory)
    )
    module.configure_model()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # policy and reference differ from the first step
        for name, parameter in sorted(module.policy.named_parameters()):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    pairs = [PreferencePair([{"role": "user", "content": q}], c, r) for q, c, r in ROWS]
    features = [encode_pair(p, tokenizer, max_length=96, max_prompt_length=48) for p in pairs]
    pad = tokenizer.pad_token_id
    batches = [collate_pairs(features[i : i + 2], pad) for i in (0, 2)]
    trainable = [p for p in module.policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=0.01)
    record: dict[str, list] = {"train": [], "val": {}, "generation": {}}
    module.train()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        stats = module.step_statistics(batches[step % 2], "train")
        stats["loss"].backward()
        grads = {
            name: bits(p.grad)
            for name, p in module.policy.named_parameters()
            if p.grad is not None
        }
        record["train"].append({
            "loss": stats["loss"].item(),
            "loss_bits": bits(stats["loss"]),
            "logps": {k: bits(v) for k, v in stats.items() if "logps" in k},
            "grads": grads,
        })
        optimizer.step()
        module.on_train_batch_end(None, None, step)  # the trim between steps, as in a fit
    module.eval()
    with torch.no_grad():
        stats = module.step_statistics(collate_pairs(features[4:], pad), "val")
    record["val"] = {k: bits(v) for k, v in stats.items()} | {"loss": stats["loss"].item()}
    prompts = [f["prompt_ids"] for f in features[:3]]
    answers = generate_batch_ids(module.policy, tokenizer, prompts, {"max_new_tokens": 6,
                                                                    "do_sample": False})
    with torch.no_grad():
        logits = module.policy(input_ids=torch.tensor([prompts[0]])).logits
    record["generation"] = {"answers": answers, "logits": bits(logits)}
    # what a fresh 4 MiB tensor holds before anything writes it: the poison, if glibc applied it
    record["unwritten_byte"] = torch.empty(4 << 20, dtype=torch.uint8)[-1].item()
    return record


if __name__ == "__main__":
    model, mode, *rest = sys.argv[1:]
    print(json.dumps(run(model, mode, int(rest[0]) if rest else 3)))
