"""The tokenized-data cache: keyed on what changes the token ids, and on nothing else.

A split is tokenized once and served from datasets' cache (``Dataset.map`` with
``tokenization_fingerprint`` as its fingerprint) while the rows, tokenizer, chat template, length
settings and ``TOKENIZATION_VERSION`` stay the same. An edit of the source that changes no token
(a comment, a refactor) keeps the cache; a change of the encoding must bump the version, which
``test_the_encoding_of_fixed_pairs_is_the_one_of_this_format_version`` enforces.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import CHATML, ROWS, tiny_datamodule, ultrafeedback_row

from lit_dpo.data import batches, datamodule, pairs
from lit_dpo.data.datamodule import TOKENIZATION_VERSION, _encode_row, tokenization_fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")

# sha256 of the token strings fixed rows encode to, by TOKENIZATION_VERSION. A change of the
# encoding with no bump fails here: bump the version and add the new digest.
ENCODING_DIGESTS = {1: "848c7cdebb6aba57b7a823dd92c6aa895ab5fc13567044b2b08d14116bc765e8"}


def encoded_fixed_pairs(tokenizer) -> str:
    rows = [ultrafeedback_row(*row) for row in ROWS[:3]]
    rows.append(ultrafeedback_row(*ROWS[3], system="You are helpful."))
    encoded = []
    for max_length, max_prompt_length in ((64, 32), (16, 12)):  # whole, then truncated
        for index, row in enumerate(rows):
            pair = _encode_row(
                row, index, tokenizer, max_length, max_prompt_length, "fixed", "ultrafeedback", None
            )
            for key, value in pair.items():
                if key.endswith("_ids"):  # token strings: ids depend on how the vocabulary grew
                    pair[key] = tokenizer.convert_ids_to_tokens(value)
            encoded.append(pair)
    return hashlib.sha256(json.dumps(encoded, sort_keys=True).encode()).hexdigest()


def test_the_encoding_of_fixed_pairs_is_the_one_of_this_format_version(tiny_tokenizer):
    digest = encoded_fixed_pairs(tiny_tokenizer)
    assert ENCODING_DIGESTS.get(TOKENIZATION_VERSION) == digest, (
        "the token ids rows encode to changed: bump TOKENIZATION_VERSION in "
        f"lit_dpo/data/datamodule.py and add {TOKENIZATION_VERSION + 1}: {digest!r} here"
    )


def _key(tokenizer, max_length=64, max_prompt_length=32, rows="rows"):
    return tokenization_fingerprint(rows, tokenizer, max_length, max_prompt_length, "ultrafeedback")


def test_the_key_changes_with_template_lengths_and_rows_and_only_with_them(tiny_tokenizer):
    import copy

    key = _key(tiny_tokenizer)
    assert _key(tiny_tokenizer) == key
    other_template = copy.deepcopy(tiny_tokenizer)
    other_template.chat_template = CHATML.replace("<|im_start|>assistant", "<|im_start|>bot")
    changed = {
        _key(other_template),
        _key(tiny_tokenizer, max_length=65),
        _key(tiny_tokenizer, max_prompt_length=31),
        _key(tiny_tokenizer, rows="other rows"),
    }
    assert len(changed) == 4 and key not in changed


def _counting_setup(monkeypatch, model_dir, data_dir, **settings) -> int:
    """Set up a tiny PreferenceDataModule and return how many rows it tokenized (0: every split
    came from the cache)."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return _encode_row(*args, **kwargs)

    monkeypatch.setattr(datamodule, "_encode_row", counting)
    tiny_datamodule(model_dir, data_dir, **settings).setup("fit")
    return len(calls)


def test_the_cache_is_missed_by_a_new_template_or_length_and_kept_by_a_comment(
    tiny_model_dir, tiny_data_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    # lengths no other test uses, so the first set-up tokenizes whatever ran before
    lengths = {"max_length": 61, "max_prompt_length": 29}
    assert _counting_setup(monkeypatch, tiny_model_dir, tiny_data_dir, **lengths) == 8
    assert _counting_setup(monkeypatch, tiny_model_dir, tiny_data_dir, **lengths) == 0

    # a comment added to every module that turns rows into token ids: still a hit
    for module in (batches, pairs, datamodule):
        edited = tmp_path / f"edited_{module.__name__.rsplit('.', 1)[1]}.py"
        edited.write_text(f"# a comment\n{open(module.__file__).read()}")
        monkeypatch.setattr(module, "__file__", str(edited))
    assert _counting_setup(monkeypatch, tiny_model_dir, tiny_data_dir, **lengths) == 0

    longer = {**lengths, "max_length": 62}
    assert _counting_setup(monkeypatch, tiny_model_dir, tiny_data_dir, **longer) == 8

    # the same model and tokenizer with another chat template
    import copy
    import shutil

    other = tmp_path / "other-template"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML.replace("<|im_start|>assistant", "<|im_start|>bot")
    tokenizer.save_pretrained(other)
    assert _counting_setup(monkeypatch, other, tiny_data_dir, **lengths) == 8
