"""Answers of the policy and the reference (adapters off, or the frozen reference adapter) to a few
prompts, written after each validation so a user can watch behaviour change over training."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from lit_dpo.files import write_text_atomically
from lit_dpo.models.generate import decode_answer, policy_and_reference_answers
from lit_dpo.progress import Progress


class GenerateSamples(Callback):
    """Answer a fixed set of prompts with the reference and with the policy, after validation.

    Written to ``<log_dir>/samples/step_<N>.md`` (and to the logger when it takes text), so a user
    can watch behaviour change over training. The reference is the policy with adapters disabled, or
    with its frozen reference adapter in place of the policy's (``model.load.reference adapter``).

    Args:
        prompts: user messages to answer; when None, the first ``num_prompts`` validation prompts.
        num_prompts: how many validation prompts to use when ``prompts`` is None.
        every_n_validations: generate after every n-th validation run.
        in_validate_command: also generate in ``lit-dpo validate``, not only after the validations
            of ``fit``; off, validating the adapter a fit just saved does not write again the
            answers that fit's last validation wrote.
        max_new_tokens: length limit of each answer.
        do_sample: sample instead of greedy decoding.
        temperature: sampling temperature (with ``do_sample``).
        top_p: nucleus sampling threshold (with ``do_sample``).
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        num_prompts: int = 3,
        every_n_validations: int = 1,
        in_validate_command: bool = True,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.9,
    ) -> None:
        self.prompts = prompts
        self.num_prompts = num_prompts
        self.every_n_validations = every_n_validations
        self.in_validate_command = in_validate_command
        self.generation = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        if do_sample:
            self.generation.update(temperature=temperature, top_p=top_p)
        self._validations = 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if not self.in_validate_command and trainer.state.fn != TrainerFn.FITTING:
            return
        if isinstance(trainer.strategy, FSDPStrategy):
            # each forward of a sharded model gathers weights from every rank, so one rank
            # cannot generate alone
            rank_zero_warn("GenerateSamples does nothing under FSDP; use lit-dpo compare after fit")
            return
        # every rank counts and reads log_dir (a broadcast); rank 0 alone generates and writes,
        # while the others wait at the next collective (the checkpoint's or the next step's)
        self._validations += 1
        log_dir = trainer.log_dir or trainer.default_root_dir
        if self._validations % self.every_n_validations or not trainer.is_global_zero:
            return
        tokenizer = trainer.datamodule.tokenizer
        prompt_ids = self._prompt_ids(trainer, tokenizer)
        # Sampling must not move the random state training draws dropout masks from: a fit with
        # samples trains as one without, and resumes exactly from a checkpoint saved before them.
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        progress = Progress(
            f"samples at step {trainer.global_step} ({len(prompt_ids)} prompts, policy and "
            "reference)",
            2,
            "models",
        )
        # policy and reference in one batch where PEFT can mix the adapters: on a CPU a 4-bit
        # forward costs about as much for a few rows as for one
        with torch.random.fork_rng(devices=devices):
            answers = policy_and_reference_answers(
                pl_module.policy, tokenizer, prompt_ids, self.generation
            )
        policy, reference = ([decode_answer(tokenizer, ids) for ids in side] for side in answers)
        progress.advance(2)
        progress.finish()
        rows = [
            (tokenizer.decode(ids), ref, pol)
            for ids, ref, pol in zip(prompt_ids, reference, policy, strict=True)
        ]
        text = _samples_markdown(trainer.global_step, rows)
        path = Path(log_dir) / "samples"
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path / f"step_{trainer.global_step}.md", text)
        for logger in trainer.loggers:
            if hasattr(logger, "log_text"):
                logger.log_text(
                    key="samples",
                    columns=["prompt", "reference", "policy"],
                    data=[list(r) for r in rows],
                    step=trainer.global_step,
                )

    def _prompt_ids(self, trainer: Trainer, tokenizer) -> list[list[int]]:
        if self.prompts:
            return [
                tokenizer(
                    tokenizer.apply_chat_template(
                        [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                    ),
                    add_special_tokens=False,
                )["input_ids"]
                for p in self.prompts
            ]
        val = trainer.datamodule.splits["val"]
        return [list(val[i]["prompt_ids"]) for i in range(min(self.num_prompts, len(val)))]


def _samples_markdown(step: int, rows: list[tuple[str, str, str]]) -> str:
    parts = [f"# Samples at step {step}\n"]
    for i, (prompt, reference, policy) in enumerate(rows, 1):
        parts.append(
            f"## Prompt {i}\n\n```\n{prompt}\n```\n\n"
            f"**reference**\n\n{reference}\n\n**policy**\n\n{policy}\n"
        )
    return "\n".join(parts)
