"""A batch through the network -> log-probs of each row's completion tokens, by the chosen path.

Three paths compute the same numbers (``tests/test_techniques.py`` checks them against each other):

- full logits: the model's (2B, T, V) logits, scored by ``logps.sequence_tokens``;
- chunked head (``chunk_size``): the last hidden states, with the output head applied only at
  scored positions, a chunk at a time (``logps.completion_tokens``);
- packed pairs (``share_prompt``, needs the chunked head): each pair as one row holding the shared
  prompt once (``packing.pack_pairs``), attended under its mask (``packing.packed_attention``: a
  dense 4D mask for sdpa or eager, a block mask for FlexAttention), scored by
  ``logps.gathered_tokens``; on a CPU the batch's rows are laid end to end in one row without
  padding where that costs less (``packing.end_to_end``).

Each gives every scored token's log-prob (``logps.ScoredTokens``), and on request WPO's
``log sum_v p(v)^2``; ``row_logps`` sums them per row, LD-DPO weighted when ``ld_alpha`` is set.

The same function serves the policy (adapters on, with gradient) and the reference (adapters off
or the reference adapter, under ``no_grad``): the caller picks the adapter and the grad mode.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lit_dpo.compat import attn_implementation
from lit_dpo.errors import ConfigError
from lit_dpo.train.logps import (
    ScoredTokens,
    completion_tokens,
    gathered_tokens,
    row_logps,
    sequence_tokens,
)
from lit_dpo.train.packing import (
    PackedPairs,
    end_to_end,
    end_to_end_is_cheaper,
    pack_pairs,
    packed_attention,
    token_cost_in_scores,
)
from lit_dpo.train.settings import DEFAULT_CHUNK_SIZE

# Logit transforms some models apply after the head: scoring hidden states would skip them.
LOGIT_RESCALING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")
# attentions that take a packed pair's mask (transformers' attn_implementation names)
PACKED_ATTENTION = ("sdpa", "eager", "flex_attention")


class ScoringPath(NamedTuple):
    """Which path computes the log-probs (``batch_token_logps``' arguments, the settings of the
    same names): all compute the same numbers.

    Attributes:
        logps_chunk_size: scored positions per output-head chunk; None scores full logits.
        share_prompt: pack each pair into one row (needs ``logps_chunk_size``).
    """

    logps_chunk_size: int | None = DEFAULT_CHUNK_SIZE
    share_prompt: bool = True


def batch_logps(
    policy,
    batch: dict[str, torch.Tensor],
    chunk_size: int | None,
    share_prompt: bool,
    ld_alpha: float | None = None,
) -> torch.Tensor:
    """(2B,) summed log-probs of the scored tokens of each row, chosen rows then rejected.

    Args:
        policy: a peft model over a causal LM (adapters as the caller set them).
        batch: ``collate_pairs`` output: ``input_ids``, ``attention_mask``, ``labels`` (2B, T).
        chunk_size: scored positions per output-head chunk; None scores full logits.
        share_prompt: pack each pair into one row (needs ``chunk_size``).
        ld_alpha: LD-DPO's weight of the tokens past a pair's shared length; None: plain sums.
    """
    return row_logps(batch_token_logps(policy, batch, chunk_size, share_prompt), ld_alpha)


def batch_token_logps(
    policy,
    batch: dict[str, torch.Tensor],
    chunk_size: int | None,
    share_prompt: bool,
    log_sum_sq: bool = False,
) -> ScoredTokens:
    """The log-prob of every scored token of the batch's 2B rows, by the chosen path.

    Args:
        policy: a peft model over a causal LM (adapters as the caller set them).
        batch: ``collate_pairs`` output: ``input_ids``, ``attention_mask``, ``labels`` (2B, T).
        chunk_size: scored positions per output-head chunk; None scores full logits.
        share_prompt: pack each pair into one row (needs ``chunk_size``).
        log_sum_sq: also compute ``log sum_v p(v)^2`` at each scored token (WPO), no gradient.
    """
    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    if chunk_size is None:
        logits = policy(input_ids=input_ids, attention_mask=attention_mask).logits
        return sequence_tokens(logits, labels, log_sum_sq)
    causal_lm = policy.get_base_model()
    head = causal_lm.get_output_embeddings()
    if not share_prompt:
        hidden = causal_lm.base_model(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        return completion_tokens(hidden, head.weight, labels, chunk_size, head.bias, log_sum_sq)
    packed = pack_pairs(input_ids, attention_mask, labels)
    if lays_pairs_end_to_end(causal_lm, packed):
        packed = end_to_end(packed)
    mask = packed_attention(
        packed, attn_implementation(causal_lm), causal_lm.get_input_embeddings().weight.dtype
    )
    hidden = causal_lm.base_model(
        input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids
    ).last_hidden_state
    return gathered_tokens(
        hidden.flatten(0, 1),
        head.weight,
        packed.positions,
        packed.targets,
        packed.sequences,
        num_sequences=input_ids.shape[0],
        chunk_size=chunk_size,
        bias=head.bias,
        log_sum_sq=log_sum_sq,
    )


def lays_pairs_end_to_end(causal_lm, packed: PackedPairs) -> bool:
    """Whether ``batch_token_logps`` runs these packed pairs end to end in one row.

    On a CPU, uneven pairs run cheaper end to end than padded to the longest (its sdpa is a flash
    kernel there: the longer row costs compute, not memory). Not on GPUs yet: unmeasured there,
    and a dense mask of the joined row grows with the square of the batch; FlexAttention's block
    mask already skips most of the padding's cost.
    """
    return (
        packed.input_ids.device.type == "cpu"
        and attn_implementation(causal_lm) != "flex_attention"
        and end_to_end_is_cheaper(
            packed.segments, token_cost_in_scores(causal_lm.config.get_text_config())
        )
    )


def check_hidden_state_scoring(policy, share_prompt: bool) -> None:
    """Fail early where scoring from hidden states would silently differ from full logits.

    Raises:
        ConfigError: the head is adapted, the model rescales its logits, or (with
            ``share_prompt``) its attention cannot take a 4D mask.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    causal_lm = policy.get_base_model()
    config = causal_lm.config.get_text_config()
    problems = []
    if isinstance(causal_lm.get_output_embeddings(), BaseTunerLayer):
        problems.append("the output head is adapted (lm_head in target_modules)")
    for name in LOGIT_RESCALING:
        if getattr(config, name, None) not in (None, 1, 1.0):
            problems.append(f"the model rescales its logits ({name})")
    attention = attn_implementation(causal_lm)
    if share_prompt and attention not in PACKED_ATTENTION:
        problems.append(
            f"share_prompt needs {', '.join(PACKED_ATTENTION)} attention, not {attention}"
        )
    if problems:
        raise ConfigError(
            "logps_chunk_size: " + "; ".join(problems) + "; set "
            "model.efficiency.logps_chunk_size null (and model.efficiency.share_prompt false) "
            "to score full logits"
        )
