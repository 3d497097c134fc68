"""Chosen and rejected of a pair packed into one row that holds their shared prefix once (pure).

A batch of B pairs is 2B right-padded rows, ``[prompt, chosen]`` then ``[prompt, rejected]``, so
every prompt token runs through the model twice (policy and reference: four times). Both rows
start with the same tokens at the same positions, so the hidden states there are the same too.
Packed, a pair is one row ``[shared prefix, rest of chosen, rest of rejected]`` with:

- position ids that restart the rejected part where the shared prefix ends, so rotary embeddings
  see each reply at the positions it had in its own row;
- an attention mask, causal, except that rejected tokens do not see the chosen ones: a dense
  (B, 1, L, L) mask for sdpa or eager attention, or a FlexAttention block mask, whose kernel
  skips the blocks nobody attends and keeps a fused kernel (``packed_attention``);
- for each scored token, the packed position whose output predicts it: the previous token's,
  except for the first rejected token after the prefix, predicted from the prefix's last token.

The shared prefix is the longest common prefix of the two rows, so it is the prompt and whatever
both replies start with. Scoring exactly what ``sequence_logps`` scores on the unpacked rows, the
log-probabilities are equal up to floating-point reordering. This is the prefix sharing of Wang and
Hegde, "Accelerating Direct Preference Optimization with Prefix Sharing",
https://arxiv.org/abs/2410.20305.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_dpo.data.batches import IGNORE_INDEX
from lit_dpo.train.pairs import num_pairs

# segment ids in a packed row
SHARED, CHOSEN, REJECTED, PAD = 0, 1, 2, 3


@dataclass
class PackedPairs:
    """B pairs packed into B rows of width L, and where the scored tokens of the 2B rows are.

    Attributes:
        input_ids: (B, L) token ids, padded on the right.
        position_ids: (B, L) positions as each token had in its unpacked row (0 on padding).
        segments: (B, L) ``SHARED``, ``CHOSEN``, ``REJECTED`` or ``PAD`` per position: what
            the attention mask is made from (``attention_mask``, ``packed_attention``).
        positions: (M,) flat index into the B * L packed positions of the state predicting each
            scored token.
        targets: (M,) the scored token ids.
        sequences: (M,) which unpacked row each scored token belongs to: pair i's chosen is i,
            its rejected B + i, as in ``collate_pairs``.
        shared: (B,) length of each pair's shared prefix.
        groups: (B, L) the pair each position belongs to, where several pairs share a row
            (``end_to_end``); None where each row holds one pair.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    sequences: torch.Tensor
    shared: torch.Tensor
    groups: torch.Tensor | None = None

    @property
    def attention_mask(self) -> torch.Tensor:
        """(B, 1, L, L) bool, True where a query (dim 2) may attend a key (dim 3); made on demand,
        since the FlexAttention path never needs it."""
        return packed_attention_mask(self.segments, self.groups)


def pack_pairs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    pad_token_id: int = 0,
    ignore_index: int = IGNORE_INDEX,
) -> PackedPairs:
    """Pack the 2B rows of a ``collate_pairs`` batch (chosen rows, then rejected) into B rows.

    Args:
        input_ids: (2B, T) right-padded token ids, pair i's chosen in row i, rejected in B + i.
        attention_mask: (2B, T) 1 on tokens, 0 on padding (which must be on the right).
        labels: (2B, T) token ids to score, ``ignore_index`` elsewhere.
        pad_token_id: id written on the packed rows' padding.
        ignore_index: label value of unscored positions.

    Returns:
        The packed rows and the scoring plan, see ``PackedPairs``.

    Raises:
        ValueError: shapes disagree, an odd number of rows, or padding that is not on the right.
    """
    if not input_ids.shape == attention_mask.shape == labels.shape or input_ids.dim() != 2:
        raise ValueError(
            f"input_ids, attention_mask and labels must be (2B, T) alike, got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(labels.shape)}"
        )
    if input_ids.shape[0] % 2:
        raise ValueError(f"expected chosen and rejected rows (2B), got {input_ids.shape[0]} rows")
    # A loop over B pairs of small index work: on the CPU, then moved once (no GPU syncs per pair).
    device = input_ids.device
    input_ids, attention_mask, labels = input_ids.cpu(), attention_mask.cpu(), labels.cpu()
    lengths = attention_mask.sum(-1)
    steps = torch.arange(input_ids.shape[1])
    if not torch.equal(attention_mask.bool(), steps < lengths.unsqueeze(-1)):
        raise ValueError("pack_pairs needs right padding: attention_mask must be 1s then 0s")

    pairs = num_pairs(input_ids)
    rows, row_positions, row_segments = [], [], []
    positions, targets, sequences, shared_lengths = [], [], [], []
    for i in range(pairs):
        chosen = input_ids[i, : lengths[i]]
        rejected = input_ids[pairs + i, : lengths[pairs + i]]
        shared = _common_prefix_length(chosen, rejected)
        rows.append(torch.cat([chosen, rejected[shared:]]))
        row_positions.append(torch.cat([steps[: len(chosen)], steps[shared : len(rejected)]]))
        row_segments.append(
            torch.cat(
                [
                    torch.full((shared,), SHARED),
                    torch.full((len(chosen) - shared,), CHOSEN),
                    torch.full((len(rejected) - shared,), REJECTED),
                ]
            )
        )
        # Unpacked position t maps to packed position t in the chosen row, and in the rejected
        # row to t while inside the shared prefix, t + (chosen's rest) after it.
        offset = len(chosen) - shared
        for row, shift in ((i, 0), (pairs + i, offset)):
            scored = (labels[row, 1:] != ignore_index).nonzero(as_tuple=True)[0] + 1
            predictor = scored - 1
            predictor = torch.where(predictor < shared, predictor, predictor + shift)
            positions.append((i, predictor))  # made flat once the packed width is known
            targets.append(labels[row, scored])
            sequences.append(torch.full_like(scored, row))
        shared_lengths.append(shared)

    width = max(len(r) for r in rows)
    packed = torch.full((pairs, width), pad_token_id, dtype=input_ids.dtype)
    position_ids = torch.zeros((pairs, width), dtype=torch.long)
    segments = torch.full((pairs, width), PAD, dtype=torch.long)
    for i, (row, pos, seg) in enumerate(zip(rows, row_positions, row_segments, strict=True)):
        packed[i, : len(row)], position_ids[i, : len(row)], segments[i, : len(row)] = row, pos, seg
    flat = [pair * width + predictor for pair, predictor in positions]
    return PackedPairs(
        input_ids=packed.to(device),
        position_ids=position_ids.to(device),
        segments=segments.to(device),
        positions=torch.cat(flat).to(device),
        targets=torch.cat(targets).to(device),
        sequences=torch.cat(sequences).to(device),
        shared=torch.tensor(shared_lengths, device=device),
    )


def end_to_end(packed: PackedPairs) -> PackedPairs:
    """The B packed rows laid end to end in one row, without their padding.

    Each pair keeps its positions, segments and mask rule; ``groups`` says which pair a position
    belongs to, so no pair attends another's tokens. The model then runs ``sum(lengths)`` tokens
    instead of ``B * max(lengths)``, for a longer attention (``end_to_end_is_cheaper`` weighs the
    two). The scored tokens, their targets and order are unchanged.
    """
    if packed.groups is not None:
        raise ValueError("these pairs are already laid end to end")
    keep = packed.segments != PAD
    lengths = keep.sum(-1)
    width = packed.segments.shape[1]
    starts = lengths.cumsum(0) - lengths
    pair, within = packed.positions // width, packed.positions % width
    groups = torch.arange(len(lengths), device=keep.device).unsqueeze(-1).expand_as(keep)
    return PackedPairs(
        input_ids=packed.input_ids[keep].unsqueeze(0),
        position_ids=packed.position_ids[keep].unsqueeze(0),
        segments=packed.segments[keep].unsqueeze(0),
        positions=starts[pair] + within,
        targets=packed.targets,
        sequences=packed.sequences,
        shared=packed.shared,
        groups=groups[keep].unsqueeze(0),
    )


def end_to_end_is_cheaper(segments: torch.Tensor, token_cost: float) -> bool:
    """Would the B packed rows run cheaper laid end to end (``end_to_end``), under a dense mask?

    A row of L tokens costs ``L * token_cost`` in its linear layers and ``L**2`` in a dense
    attention, which computes every query-key score, masked or not: B padded rows cost
    ``B * (W * token_cost + W**2)`` (W the longest), one row ``N * token_cost + N**2`` (N the
    tokens). Uneven pairs pad more, so joining them pays where lengths vary and batches are small.

    Args:
        segments: (B, W) ``PackedPairs.segments``.
        token_cost: a token's linear-layer cost in units of one query-key score
            (``token_cost_in_scores``).
    """
    rows, width = segments.shape
    tokens = int((segments != PAD).sum())
    return tokens * token_cost + tokens**2 < rows * (width * token_cost + width**2)


def token_cost_in_scores(config) -> float:
    """A token's cost in a decoder layer's linear layers, in units of one query-key score of its
    attention (multiply-adds per query-key pair: ``2 * heads * head_dim``, for the scores and
    the weighted sum). About 3,000 for SmolLM2-135M: one token of linear work is worth the
    attention scores of a 3,000-token row.

    Args:
        config: a transformers text config (hidden_size, intermediate_size, attention heads).
    """
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    linear = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    linear += 3 * hidden * config.intermediate_size
    return linear / (2 * heads * head_dim)


def visible(
    query_segment: torch.Tensor,
    key_segment: torch.Tensor,
    query_index: torch.Tensor,
    key_index: torch.Tensor,
    query_group: torch.Tensor | None = None,
    key_group: torch.Tensor | None = None,
) -> torch.Tensor:
    """The packed mask's rule, on broadcastable tensors: may this query attend this key?

    Causal; within one pair (where ``groups`` say which pair a position belongs to); a rejected
    token does not see the chosen ones; padding sees itself only, so no attention row is empty
    (empty rows give NaN). The dense mask and the FlexAttention block mask are both made from this
    one rule.
    """
    allowed = (key_index <= query_index) & ~((query_segment == REJECTED) & (key_segment == CHOSEN))
    if query_group is not None:
        allowed = allowed & (query_group == key_group)
    allowed = allowed & (key_segment != PAD) & (query_segment != PAD)
    return allowed | ((query_index == key_index) & (query_segment == PAD))


def packed_attention_mask(
    segments: torch.Tensor, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, L) segment ids -> (B, 1, L, L) bool: causal, rejected blind to chosen, padding to itself.

    Args:
        segments: (B, L) ``SHARED``, ``CHOSEN``, ``REJECTED`` or ``PAD`` per position.
        groups: (B, L) the pair of each position where several pairs share a row, else None.
    """
    steps = torch.arange(segments.shape[1], device=segments.device)
    query, key = segments.unsqueeze(-1), segments.unsqueeze(-2)
    query_group = key_group = None
    if groups is not None:
        query_group, key_group = groups.unsqueeze(-1), groups.unsqueeze(-2)
    allowed = visible(query, key, steps.unsqueeze(-1), steps, query_group, key_group)
    return allowed.unsqueeze(1)


def packed_block_mask(segments: torch.Tensor, groups: torch.Tensor | None = None):
    """(B, L) segment ids -> the same mask as a FlexAttention ``BlockMask``.

    FlexAttention evaluates ``visible`` inside its fused kernel and skips the blocks of 128 x 128
    that no query attends (chosen's keys, for rejected's queries, and everything above the
    diagonal), so no (B, 1, L, L) tensor reaches the kernel.

    Args:
        segments: (B, L) ``SHARED``, ``CHOSEN``, ``REJECTED`` or ``PAD`` per position.
        groups: (B, L) the pair of each position where several pairs share a row, else None.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(batch, head, query_index, key_index):
        query_group = key_group = None
        if groups is not None:
            query_group, key_group = groups[batch, query_index], groups[batch, key_index]
        return visible(
            segments[batch, query_index],
            segments[batch, key_index],
            query_index,
            key_index,
            query_group,
            key_group,
        )

    pairs, width = segments.shape
    return create_block_mask(mask_mod, pairs, None, width, width, device=segments.device)


def packed_attention(packed: PackedPairs, attn_implementation: str, dtype: torch.dtype):
    """The packed mask in the form a model's attention takes it as given.

    Args:
        packed: the packed rows (their ``segments`` and ``groups``).
        attn_implementation: the model's attention: ``flex_attention`` gets a ``BlockMask``;
            ``sdpa`` and ``eager`` a dense mask (``attention_bias``).
        dtype: dtype of the model's activations (the scores an eager mask is added to).
    """
    if attn_implementation == "flex_attention":
        return packed_block_mask(packed.segments, packed.groups)
    return attention_bias(packed.attention_mask, attn_implementation, dtype)


def attention_bias(
    allowed: torch.Tensor, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """A packed (B, 1, L, L) mask in the form a model's attention takes it as given.

    sdpa takes a bool mask (True: attend); eager adds the mask to the scores, so it gets 0 where a
    query may attend and the dtype's minimum elsewhere.

    Args:
        allowed: (B, 1, L, L) bool, ``PackedPairs.attention_mask``.
        attn_implementation: the model's attention (``sdpa`` or ``eager``).
        dtype: dtype of the model's activations (the scores the eager mask is added to).
    """
    if attn_implementation == "sdpa":
        return allowed
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


def _common_prefix_length(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n
