"""lit-dpo compare: answers, implicit rewards, held-out metrics, judge, report files, edge cases."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch
from conftest import make_adapter, torch_threads

from lit_dpo.cli import main
from lit_dpo.compare.command import compare
from lit_dpo.compare.judge import judge_scores, load_judge, wilson_interval, win_rate
from lit_dpo.compare.prompts import EDGE_CASES, is_refusal, load_prompts, long_context_case
from lit_dpo.compare.report import Answer, PromptResult, category_rows
from lit_dpo.compare.scoring import preference_summary
from lit_dpo.errors import ConfigError, DataError

MAX_NEW_TOKENS = 6
MAX_LENGTH = 96
USER_PROMPTS = ["What is the capital of France?", "Who wrote Hamlet?"]
EDGE_CATEGORIES = [c.category for c in EDGE_CASES] + ["long-context"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def tiny_judge(tiny_model_dir, tmp_path_factory):
    """A random one-logit sequence-classification model sharing the tiny tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(1)
    config = LlamaConfig.from_pretrained(tiny_model_dir, num_labels=1)
    path = tmp_path_factory.mktemp("judge")
    LlamaForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def run(tiny_adapter, tiny_data_dir, tiny_judge, tmp_path_factory):
    """One compare through the CLI: 2 user prompts, the edge cases, held-out pairs and a judge."""
    root = tmp_path_factory.mktemp("compare")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(USER_PROMPTS) + "\n\n")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), torch_threads(1):
        main(
            [
                "compare",
                f"--adapter={tiny_adapter}",
                f"--prompts={prompts}",
                f"--dataset={tiny_data_dir}",
                f"--judge={tiny_judge}",
                f"--out={root / 'out'}",
                f"--max_new_tokens={MAX_NEW_TOKENS}",
                f"--max_length={MAX_LENGTH}",
                "--batch_size=2",
            ]
        )
    out = root / "out"
    return {
        "out": out,
        "stdout": stdout.getvalue(),
        "report": json.loads((out / "compare.json").read_text()),
    }


def test_answers_every_prompt_with_both_models(run, tiny_model_dir):
    report = run["report"]
    categories = [r["case"]["category"] for r in report["results"]]
    assert categories == ["user", "user", *EDGE_CATEGORIES]
    assert [r["case"]["messages"][-1]["content"] for r in report["results"][:2]] == USER_PROMPTS
    for result in report["results"]:
        for side in ("reference", "policy"):
            answer = result[side]
            assert 0 <= answer["tokens"] <= MAX_NEW_TOKENS
            assert math.isfinite(answer["reward"])
            assert answer["refusal"] == is_refusal(answer["text"])
    # the adapter is random and strong: the two models must not answer everything alike
    assert any(r["reference"]["text"] != r["policy"]["text"] for r in report["results"])
    # the base comes from the adapter's own adapter_config.json
    assert report["base_model"] == str(tiny_model_dir)
    assert report["settings"]["beta"] == 0.1


def test_implicit_reward_matches_a_hand_computation(run, tiny_adapter, tiny_model_dir):
    """beta * (log p_policy - log p_reference) of the answer tokens plus end-of-turn, by hand."""
    from transformers import AutoTokenizer

    from lit_dpo.models.inference import load_for_inference

    tokenizer = AutoTokenizer.from_pretrained(tiny_adapter)
    model = load_for_inference(tiny_adapter, str(tiny_model_dir)).model
    result = run["report"]["results"][0]
    messages = result["case"]["messages"]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    for side in ("reference", "policy"):
        reply = {"role": "assistant", "content": result[side]["text"]}
        full = tokenizer.apply_chat_template([*messages, reply], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
        assert ids[0, : len(prompt_ids)].tolist() == prompt_ids

        policy = _reply_logp(model, ids, len(prompt_ids))
        with model.disable_adapter():
            reference = _reply_logp(model, ids, len(prompt_ids))
        assert result[side]["reward"] == pytest.approx(0.1 * (policy - reference), abs=1e-4)
        assert abs(policy - reference) > 1e-3, "the adapter should change the reply's log-prob"


def _reply_logp(model, ids: torch.Tensor, start: int) -> float:
    """Sum of log p(token | everything before) over ids[0, start:], with plain log_softmax."""
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    picked = logps.gather(-1, ids[0, 1:, None])[:, 0]
    return picked[start - 1 :].sum().item()


def test_heldout_metrics_match_lit_dpo_validate(
    run, tiny_adapter, tiny_model_dir, tiny_data_dir, tmp_path
):
    main(
        [
            "validate",
            f"--model.model={tiny_model_dir}",
            f"--model.load.adapter={tiny_adapter}",
            f"--data.dataset={tiny_data_dir}",
            "--data.batch_size=2",
            f"--data.max_length={MAX_LENGTH}",
            f"--data.max_prompt_length={MAX_LENGTH // 2}",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    validated = json.loads((tmp_path / "validate_metrics.json").read_text())
    heldout = run["report"]["heldout"]
    assert heldout["pairs"] == 2
    # compare's keys are validation's, without the val/ prefix, plus what only compare measures
    assert set(heldout) == {
        "pairs",
        "logps_accuracy/reference",
        "logps_accuracy/policy",
        "logps_accuracy_per_token/reference",
        "logps_accuracy_per_token/policy",
        "rewards/accuracies",
        "rewards/margins",
        "perplexity_chosen/reference",
        "perplexity_chosen/policy",
    }
    for key in set(heldout) - {"pairs", "perplexity_chosen/reference", "perplexity_chosen/policy"}:
        assert heldout[key] == pytest.approx(validated[f"val/{key}"], abs=1e-4), key
    assert abs(heldout["rewards/margins"]) > 1e-4
    assert heldout["perplexity_chosen/policy"] != pytest.approx(
        heldout["perplexity_chosen/reference"]
    )
    assert 1 < heldout["perplexity_chosen/reference"] < 10 * 200  # random model, ~70-word vocab


def test_heldout_accuracies_come_with_their_bootstrap_intervals(run):
    """Each held-out accuracy has a seeded 95% interval over pairs that holds it, in the JSON and
    on the terminal; on 2 pairs an accuracy is 0, 0.5 or 1 and so is each interval bound."""
    heldout, intervals = run["report"]["heldout"], run["report"]["heldout_intervals"]
    accuracies = [key for key in heldout if "accuracy" in key or key == "rewards/accuracies"]
    assert len(accuracies) == 5
    assert set(intervals) == {f"{key}/ci_{side}" for key in accuracies for side in ("low", "high")}
    for key in accuracies:
        low, high = intervals[f"{key}/ci_low"], intervals[f"{key}/ci_high"]
        assert low <= heldout[key] <= high, key
        assert {low, high} <= {0.0, 0.5, 1.0}, key
    key = "rewards/accuracies"
    low, high = intervals[key + "/ci_low"], intervals[key + "/ci_high"]
    printed = f"{heldout[key]:.3f} [{low:.3f}, {high:.3f}]"
    assert printed in run["stdout"]


def test_judge_scores_and_win_rate(run, tiny_judge):
    report = run["report"]
    model, tokenizer = load_judge(str(tiny_judge))
    first = report["results"][0]
    again = judge_scores(model, tokenizer, [(first["case"]["messages"], first["policy"]["text"])])
    assert again[0] == pytest.approx(first["policy"]["judge"], abs=1e-5)
    policy = [r["policy"]["judge"] for r in report["results"]]
    reference = [r["reference"]["judge"] for r in report["results"]]
    wins = sum(p > r for p, r in zip(policy, reference, strict=True))
    ties = sum(p == r for p, r in zip(policy, reference, strict=True))
    judge = report["judge"]
    assert judge["prompts"] == len(report["results"]) == 11
    # the same scores, as the common verdicts every judge's report reads
    name = f"reward_model:{tiny_judge}"
    assert report["judges"][name]["overall"]["win_rate"] == pytest.approx(judge["win_rate"])
    assert [v["judge"] for v in report["verdicts"]] == [name] * 11
    assert [v["prompt_id"] for v in report["verdicts"]] == [
        r["prompt_id"] for r in report["results"]
    ]
    assert judge["win_rate"] == pytest.approx((wins + ties / 2) / 11)
    assert 0 <= judge["ci_low"] <= judge["win_rate"] <= judge["ci_high"] <= 1
    assert judge["ci_high"] - judge["ci_low"] > 0.3  # 10 prompts cannot pin a rate down


def test_report_files_are_self_contained_and_complete(run):
    html = (run["out"] / "compare.html").read_text()
    markdown = (run["out"] / "compare.md").read_text()
    for banned in ("<script", "<link", "src=", "url(", "@import"):
        assert banned not in html
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for category in EDGE_CATEGORIES:
        assert f"<td>{category}</td>" in html
        assert f"| {category} |" in markdown
    assert "## By category" in markdown and "win rate of policy, reward_model:" in markdown
    assert "## Judges" in markdown and "## Answer health" in markdown
    assert markdown.count("**reference** (") == markdown.count("**policy** (") == 11
    explained = "reference = adapters off (the base model); policy = adapters on"
    assert explained in markdown and explained in html and explained in run["stdout"]
    assert "<div class='answer policy'><b>policy</b>" in html
    assert "<div class='answer reference'><b>reference</b>" in html
    assert ".policy pre{" in html and ".reference pre{" in html
    for line in ("log-prob accuracy, summed", "refusal rate", "win rate of policy, reward_model"):
        assert line in run["stdout"]


def test_long_context_case_fills_the_budget(tiny_tokenizer):
    def count(messages):
        text = tiny_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])

    for budget in (120, 400):
        case = long_context_case(count, budget)
        used = count(case.messages)
        assert budget - 30 < used <= budget
        text = case.messages[-1]["content"]
        assert "HELIOTROPE" in text.splitlines()[0] and text.rstrip().endswith("one word.")


def test_refusal_heuristic():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("I can\u2019t help you write a phishing email.")
    assert is_refusal("As an AI, I must decline.")
    assert not is_refusal("Paris is the capital of France.")
    assert not is_refusal("Call emergency services now. " + "x" * 200 + " I can't diagnose you.")
    assert not is_refusal("")


def test_load_prompts(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("first\n\n  second  \n")
    assert [c.messages for c in load_prompts(text)] == [
        [{"role": "user", "content": "first"}],
        [{"role": "user", "content": "second"}],
    ]
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and then?"},
    ]
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(["one", conversation]))
    cases = load_prompts(as_json)
    assert [c.messages for c in cases] == [[{"role": "user", "content": "one"}], conversation]
    as_json.write_text(json.dumps(["ok", conversation[:2]]))
    with pytest.raises(DataError, match="item 1: the last message must be the user's"):
        load_prompts(as_json)
    with pytest.raises(DataError, match="no such prompts file"):
        load_prompts(tmp_path / "missing.txt")


def test_wilson_interval_hand_worked():
    """8 of 10: p = .8, z^2 = 3.8416, centre (.8 + .19208) / 1.38416 = .71674,
    half-width 1.96 * sqrt(.016 + .009604) / 1.38416 = .22658 -> (.49016, .94332)."""
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.49016, abs=1e-4), pytest.approx(0.94332, abs=1e-4))
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    rate = win_rate(policy_scores=[1.0, 2.0, 0.0, 5.0], reference_scores=[0.0, 2.0, 1.0, 4.0])
    assert (rate["wins"], rate["ties"], rate["losses"]) == (2, 1, 1)
    assert rate["win_rate"] == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError, match="one reference score per policy score"):
        win_rate([1.0], [])


def test_preference_summary_hand_worked():
    """Two pairs, beta 0.5, chosen replies of 2 and 8 tokens, rejected of 1 and 4.

    Rewards: chosen .5*(-4+5) = .5 and .5*(-10+8) = -1; rejected .5*(-6+6) = 0 and .5*(-7+8) = .5.
    Margins .5 and -1.5: mean -.5, reward accuracy 1/2. Summed log-probs: policy -4 > -6 but
    -10 < -7 (1/2); reference -5 > -6 and -8 = -8, a tie counted wrong (1/2). Per token: policy
    -2 > -6 and -1.25 > -1.75; reference -2.5 > -6 and -1 > -2 (both 1). Perplexity on chosen,
    10 tokens: policy exp(14/10), reference exp(13/10).
    """
    t = torch.tensor
    summary = preference_summary(
        policy_chosen=t([-4.0, -10.0]),
        policy_rejected=t([-6.0, -7.0]),
        reference_chosen=t([-5.0, -8.0]),
        reference_rejected=t([-6.0, -8.0]),
        chosen_counts=t([2, 8]),
        rejected_counts=t([1, 4]),
        beta=0.5,
    )
    assert summary["pairs"] == 2
    assert summary["rewards/margins"] == pytest.approx(-0.5)
    assert summary["rewards/accuracies"] == 0.5
    assert summary["logps_accuracy/policy"] == 0.5
    assert summary["logps_accuracy/reference"] == 0.5
    assert summary["logps_accuracy_per_token/policy"] == 1.0
    assert summary["logps_accuracy_per_token/reference"] == 1.0
    assert summary["perplexity_chosen/policy"] == pytest.approx(math.exp(1.4))
    assert summary["perplexity_chosen/reference"] == pytest.approx(math.exp(1.3))
    with pytest.raises(ValueError, match="share one shape"):
        preference_summary(t([1.0]), t([1.0]), t([1.0]), t([1.0]), t([1, 2]), t([1]), beta=0.1)


def test_heldout_metrics_accumulate_over_batches_as_validation_does():
    """The hand-worked pairs of the test above, one per batch, through the update validation
    runs every step: the same numbers as all pairs at once, perplexity over all 10 tokens."""
    from lit_dpo.compare.scoring import dpo_pair_statistics
    from lit_dpo.train.metrics import computed, heldout_metric_set, update_metrics

    t = torch.tensor
    metrics = heldout_metric_set()
    for policy, reference, counts in (
        (t([-4.0, -6.0]), t([-5.0, -6.0]), t([2, 1])),
        (t([-10.0, -7.0]), t([-8.0, -8.0]), t([8, 4])),
    ):
        update_metrics(metrics, dpo_pair_statistics(policy, reference, counts, beta=0.5))
    summary = computed(metrics)
    assert summary["rewards/margins"] == pytest.approx(-0.5)
    assert summary["rewards/accuracies"] == 0.5
    assert summary["logps_accuracy/reference"] == 0.5
    assert summary["logps_accuracy_per_token/policy"] == 1.0
    assert summary["perplexity_chosen/policy"] == pytest.approx(math.exp(1.4))
    assert summary["perplexity_chosen/reference"] == pytest.approx(math.exp(1.3))


def test_category_rows():
    def answer(tokens, refusal):
        return Answer("x", tokens, 0.5, refusal)

    case = EDGE_CASES[3]
    rows = category_rows(
        [
            PromptResult(case, reference=answer(10, False), policy=answer(4, True)),
            PromptResult(case, reference=answer(20, False), policy=answer(6, False)),
        ]
    )
    assert rows == [
        {
            "category": "harmful",
            "prompts": 2,
            "tokens/reference": 15,
            "refusal_rate/reference": 0.0,
            "reward/reference": 0.5,
            "tokens/policy": 5,
            "refusal_rate/policy": 0.5,
            "reward/policy": 0.5,
        }
    ]


def test_bad_settings_fail_before_loading_with_every_problem(tmp_path, capsys):
    with pytest.raises(ConfigError) as error:
        compare(str(tmp_path / "nowhere"), beta=-1, max_new_tokens=200, max_length=128)
    message = str(error.value)
    assert "no such folder" in message and "--beta" in message and "--max_length 128" in message
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", f"--adapter={tmp_path}"])
    assert exit_info.value.code == 2
    assert "no adapter_config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_and_export_on_smollm2(tmp_path):
    """End to end on the embedded SmolLM2-135M-Instruct: compare (4-bit) and export (bf16)."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_dpo.sources import DEFAULT_MODEL, resolve_model

    base_dir = resolve_model(DEFAULT_MODEL)
    adapter = make_adapter(base_dir, tmp_path / "adapter", std=1e-3)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["What is the capital of France?", "Name a primary colour."]))
    main(
        [
            "compare",
            f"--adapter={adapter}",
            f"--prompts={prompts}",
            "--val_size=4",
            "--max_new_tokens=8",
            "--max_length=256",
            f"--out={tmp_path / 'compare'}",
        ]
    )
    report = json.loads((tmp_path / "compare" / "compare.json").read_text())
    assert report["base_model"] == base_dir
    assert [r["case"]["category"] for r in report["results"]] == ["user", "user", *EDGE_CATEGORIES]
    france = report["results"][0]
    assert "Paris" in france["reference"]["text"] and "Paris" in france["policy"]["text"]
    for result in report["results"]:
        for side in ("reference", "policy"):
            assert 0 < result[side]["tokens"] <= 8
            assert result[side]["reward"] != 0.0 and math.isfinite(result[side]["reward"])
    heldout = report["heldout"]
    assert heldout["pairs"] == 4
    assert 1 < heldout["perplexity_chosen/reference"] < 100  # a real model on real replies
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    long_case = report["results"][-1]["case"]
    rendered = tokenizer.apply_chat_template(
        long_case["messages"], tokenize=False, add_generation_prompt=True
    )
    budget = 256 - 8 - 8
    assert budget - 40 < len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) <= budget

    out = tmp_path / "merged"
    main(["export", f"--adapter={adapter}", f"--out={out}", "--dtype=bf16"])
    assert not {p.name for p in out.iterdir()} & {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"BF16"}
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    exported_tokenizer = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = exported_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert prompt == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    ids = exported_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        answer = merged.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in exported_tokenizer.decode(answer[0, ids.shape[1] :])


def test_held_out_scoring_takes_the_fast_path_with_full_logits_numbers(
    tiny_adapter, tiny_model_dir
):
    """compare scores held-out pairs packed, with the head on reply tokens only, as training
    does; the sums and counts equal full logits' for policy and reference alike."""
    from transformers import AutoTokenizer

    from lit_dpo.compare.scoring import reply_logps, scoring_path
    from lit_dpo.data.batches import collate_pairs, encode_pair
    from lit_dpo.data.pairs import PreferencePair
    from lit_dpo.models.inference import load_for_inference
    from lit_dpo.train.logps import sequence_tokens

    def sequence_logps(logits, labels):
        tokens = sequence_tokens(logits, labels)
        return tokens.sums(), tokens.counts()

    tokenizer = AutoTokenizer.from_pretrained(tiny_adapter)
    model = load_for_inference(tiny_adapter, str(tiny_model_dir)).model
    assert scoring_path(model) == (512, True)
    pairs = [
        PreferencePair(prompt=[{"role": "user", "content": "Name a colour."}],
                       chosen="Blue, like the sky.", rejected="No."),
        PreferencePair(prompt=[{"role": "user", "content": "Count to three, slowly please."}],
                       chosen="One", rejected="One, two, three, and that is all."),
    ]
    encoded = [encode_pair(pair, tokenizer, MAX_LENGTH, MAX_LENGTH // 2) for pair in pairs]
    batch = collate_pairs(encoded, tokenizer.pad_token_id)
    policy, reference, counts = reply_logps(model, batch)

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        full_policy, full_counts = sequence_logps(model(**inputs).logits, batch["labels"])
        with model.disable_adapter():
            full_reference, _ = sequence_logps(model(**inputs).logits, batch["labels"])
    torch.testing.assert_close(policy, full_policy, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(reference, full_reference, atol=1e-4, rtol=1e-5)
    assert counts.tolist() == full_counts.tolist()
    assert (policy - reference).abs().max() > 1e-3, "the adapter should change the log-probs"
