"""``lit-dpo compare``: what training did, the reference against the policy (the adapter).

The base is loaded once, 4-bit as in training, with the adapter attached: that is the policy. The
reference is the one training measured against: the base alone (peft's ``disable_adapter()``), or,
when the run had one, its frozen reference adapter, attached beside the policy's on the same base
(``--reference_adapter``, by default the one the adapter folder records in
``lit_dpo_reference.json``). For the same
prompts (the user's, plus built-in edge cases) both answer greedily, and each answer gets its
length and its implicit DPO reward
``beta * (log p_policy(answer | prompt) - log p_reference(answer | prompt))``. On the held-out
preference split it measures, under the keys validation logs, log-probability accuracy of both
models, implicit-reward accuracy and margin, and perplexity on the chosen replies. An optional
judge (any sequence-classification reward model) scores both answers, and an optional AI judge
(any chat model behind an OpenAI-compatible endpoint) picks the better answer of each pair in
both orders; each gives the policy's win rate over the reference with a 95% interval, beside
human votes from ``human_votes.json`` when the output folder holds one. Every answer gets health
checks (loops, evasive non-answers, refusals of benign prompts). Writes ``compare.html``
(self-contained), ``compare.md`` and ``compare.json`` to ``--out`` and prints a summary.

    lit-dpo compare --adapter runs/cpu/adapter --prompts my_prompts.txt
    lit-dpo compare --adapter runs/dpo/adapter --reference_adapter runs/sft/adapter
    lit-dpo compare --adapter runs/cpu/adapter --judge_url http://127.0.0.1:8080/v1 \
        --judge_model qwen2.5-7b-instruct
    lit-dpo compare --config compare.yaml     # any of the arguments below, as YAML
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoConfig

from lit_dpo.compare.ai_judge import DEFAULT_CACHE, MAX_TOKENS, AIJudge, JudgeError, Pair
from lit_dpo.compare.health import answer_health
from lit_dpo.compare.judge import judge_scores, load_judge, win_rate
from lit_dpo.compare.pairwise import load_template
from lit_dpo.compare.prompts import (
    EDGE_CASES,
    PromptCase,
    load_prompts,
    long_context_case,
)
from lit_dpo.compare.report import (
    Answer,
    CompareReport,
    PromptResult,
    summary_table,
)
from lit_dpo.compare.report_files import write_report
from lit_dpo.compare.scoring import answer_rewards, heldout_evaluation
from lit_dpo.compare.verdicts import from_scores
from lit_dpo.data.batches import encode_pair
from lit_dpo.data.datamodule import PreferenceDataModule
from lit_dpo.data.pairs import PreferencePair
from lit_dpo.errors import ConfigError
from lit_dpo.files import unwritable_problem
from lit_dpo.models.adapters import check_adapter, pair_problems
from lit_dpo.models.generate import (
    answer_length,
    decode_answer,
    policy_and_reference_answers,
)
from lit_dpo.models.inference import (
    adapter_base_model,
    load_adapter_tokenizer,
    load_for_inference,
    reference_adapter_for,
)
from lit_dpo.models.policy import DType, Quantization
from lit_dpo.progress import track
from lit_dpo.sources import DEFAULT_DATASET, resolve_model
from lit_dpo.stats import interval_summary

log = logging.getLogger(__name__)

# Tokens kept free after the answer for the template's end-of-turn when the answer is scored.
END_OF_TURN_ROOM = 8
MIN_PROMPT_TOKENS = 16


def compare(
    adapter: str,
    model: str | None = None,
    reference_adapter: str | None = None,
    prompts: str | None = None,
    edge_cases: bool = True,
    dataset: str = DEFAULT_DATASET,
    val_size: int = 100,
    judge: str | None = None,
    judge_url: str | None = None,
    judge_model: str | None = None,
    judge_template: str | None = None,
    judge_cache: str = DEFAULT_CACHE,
    judge_concurrency: int = 4,
    judge_timeout: float = 120.0,
    judge_max_tokens: int = MAX_TOKENS,
    out: str = "runs/compare",
    beta: float = 0.1,
    max_new_tokens: int = 128,
    max_length: int = 1024,
    batch_size: int = 4,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    device: str | None = None,
    allow_pickle: bool = False,
) -> CompareReport:
    """Compare the reference and the policy, write the report files, and return the report.

    Args:
        adapter: folder of a trained PEFT adapter (``runs/cpu/adapter``).
        model: base model; by default the adapter's ``base_model_name_or_path``.
        reference_adapter: the frozen adapter the policy was trained against (an SFT adapter);
            by default the one ``adapter`` records in ``lit_dpo_reference.json`` (a fit with
            ``model.load.reference adapter`` writes it), else none: the reference is the base.
        prompts: file of the user's prompts, one per line, or a JSON list (strings or
            conversations).
        edge_cases: also answer the built-in edge cases (:mod:`lit_dpo.compare.prompts`).
        dataset: preference data whose held-out split is evaluated.
        val_size: held-out pairs to evaluate; 0 skips the held-out evaluation.
        judge: sequence-classification reward model that scores both answers (optional).
        judge_url: base URL of an OpenAI-compatible endpoint (``http://host:port/v1``) whose
            chat model judges each pair of answers, in both orders (optional; with
            ``judge_model``). Its API key, if it needs one, is read from the environment
            variable ``LIT_DPO_JUDGE_API_KEY``.
        judge_model: the model name the endpoint serves, to judge with.
        judge_template: file of the pairwise question with ``{prompt}``, ``{answer_a}`` and
            ``{answer_b}``; by default the shipped ``compare/templates/pairwise.txt``.
        judge_cache: folder of the AI judge's verdict cache; a rerun asks only new questions.
        judge_concurrency: AI judge requests in flight at once.
        judge_timeout: seconds before an AI judge request is given up and retried.
        judge_max_tokens: the longest AI judge reply asked for (room for a short reasoning
            before the verdict); a few tokens for a judge that answers with the verdict alone.
        out: folder for ``compare.html``, ``compare.md`` and ``compare.json``.
        beta: DPO beta of the implicit reward; use the training run's.
        max_new_tokens: length limit of each answer (greedy decoding).
        max_length: context budget in tokens: held-out pairs are cut to it, prompts keep their
            last ``max_length - max_new_tokens - 8`` tokens, and the long-context case fills it.
        batch_size: held-out pairs per forward pass.
        quantization: ``nf4`` (as QLoRA training) or ``none``.
        compute_dtype: dtype of the 4-bit matmuls and of the other weights.
        device: ``cuda``, ``cpu``...; by default the GPU when there is one.
        allow_pickle: also read model, adapter and judge weights stored as pickles (``.bin``);
            else safetensors only.

    Raises:
        ConfigError: bad settings or adapter folder (all problems in one message).
        DataError: the prompts file or the dataset is unusable.
    """
    prompt_budget = max_length - max_new_tokens - END_OF_TURN_ROOM
    problems = check_adapter(adapter, allow_pickle)
    if not problems:
        reference_adapter, reference_problems = reference_adapter_for(
            adapter, reference_adapter, allow_pickle
        )
        problems += reference_problems
        if reference_adapter is not None and not reference_problems:
            options = ("--adapter", "--reference_adapter")
            problems += pair_problems(adapter, reference_adapter, options)
    problems += _setting_problems(
        beta, max_new_tokens, max_length, prompt_budget, val_size, batch_size
    )
    if not (prompts or edge_cases or val_size):
        problems.append(
            "nothing to compare: give --prompts, keep --edge_cases true, or --val_size > 0"
        )
    template, judge_problems = _judge_settings(
        judge_url, judge_model, judge_template, judge_concurrency, judge_timeout
    )
    problems += judge_problems
    if judge_max_tokens < 1:
        problems.append(f"--judge_max_tokens must be at least 1, got {judge_max_tokens}")
    unwritable = unwritable_problem(out, "--out")
    if unwritable:
        problems.append(unwritable)
    if problems:
        raise ConfigError("compare: " + "; ".join(problems))
    # Everything that can fail on input fails here, before the model loads.
    cases = load_prompts(prompts) if prompts else []
    ai_judge = None
    if judge_url and judge_model and template:
        ai_judge = AIJudge(
            judge_url,
            judge_model,
            template,
            judge_cache,
            judge_concurrency,
            judge_timeout,
            max_tokens=judge_max_tokens,
        )
        ai_judge.check()
    base_name = adapter_base_model(adapter, model)
    context = getattr(
        AutoConfig.from_pretrained(resolve_model(base_name), trust_remote_code=False),
        "max_position_embeddings",
        None,
    )
    if context is not None and max_length > context:
        raise ConfigError(f"--max_length {max_length} is beyond {base_name}'s context of {context}")
    tokenizer = load_adapter_tokenizer(adapter, base_name)
    if edge_cases:
        cases += [*EDGE_CASES, long_context_case(_token_counter(tokenizer), prompt_budget)]
    heldout = heldout_loader(dataset, base_name, val_size, max_length, batch_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = {
        "beta": beta,
        "max_new_tokens": max_new_tokens,
        "max_length": max_length,
        "decoding": "greedy",
        "quantization": quantization,
    }
    if val_size:
        settings.update(dataset=dataset, val_size=val_size)
    report = CompareReport(base_name, str(adapter), settings, reference_adapter=reference_adapter)

    # the loader serve and export use: the same folder gives the same network
    policy = load_for_inference(
        adapter, base_name, reference_adapter, quantization, compute_dtype, device, allow_pickle
    ).model
    generation = {"max_new_tokens": max_new_tokens, "do_sample": False}
    for case in track(cases, "generating answers (reference and policy)", unit="prompts"):
        report.results.append(
            _answer_both(policy, tokenizer, case, generation, beta, max_length, prompt_budget)
        )
    if heldout is not None:
        report.heldout, outcomes = heldout_evaluation(policy, heldout, beta)
        report.heldout_intervals = interval_summary(outcomes)
    # the judge may be large: free the policy first
    del policy
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if judge and report.results:
        settings["judge"] = judge
        _judge(report, judge, device, getattr(torch, compute_dtype), allow_pickle)
    if ai_judge is not None and report.results:
        settings.update(judge_url=judge_url, judge_model=judge_model)
        settings["judge_template"] = judge_template or "built-in pairwise.txt"
        try:
            _ai_judge(report, ai_judge)
        except JudgeError:
            # keep the answers: the report without the AI judge, then the error; the verdicts
            # paid for so far are in the cache for the rerun
            _write(report, Path(out))
            raise
    _write(report, Path(out))
    return report


def _judge_settings(
    url: str | None,
    model: str | None,
    template_path: str | None,
    concurrency: int,
    timeout: float,
) -> tuple[str | None, list[str]]:
    """The AI judge's template text, and what is wrong with its settings."""
    if not (url or model or template_path):
        return None, []
    problems = []
    if not (url and model):
        problems.append("--judge_url and --judge_model go together: give both for an AI judge")
    if concurrency < 1:
        problems.append(f"--judge_concurrency must be at least 1, got {concurrency}")
    if timeout <= 0:
        problems.append(f"--judge_timeout must be positive, got {timeout}")
    try:
        template = load_template(template_path)
    except ConfigError as error:
        problems.append(str(error))
        template = None
    return template, problems


def _setting_problems(
    beta: float,
    max_new_tokens: int,
    max_length: int,
    prompt_budget: int,
    val_size: int,
    batch_size: int,
) -> list[str]:
    problems = []
    if beta <= 0:
        problems.append(f"--beta must be positive, got {beta}")
    if max_new_tokens < 1:
        problems.append(f"--max_new_tokens must be at least 1, got {max_new_tokens}")
    if prompt_budget < MIN_PROMPT_TOKENS:
        problems.append(
            f"--max_length {max_length} leaves {prompt_budget} prompt tokens after "
            f"--max_new_tokens {max_new_tokens}; raise it to at least "
            f"{max_new_tokens + END_OF_TURN_ROOM + MIN_PROMPT_TOKENS}"
        )
    if val_size < 0:
        problems.append(f"--val_size must be 0 (skip) or more, got {val_size}")
    if batch_size < 1:
        problems.append(f"--batch_size must be at least 1, got {batch_size}")
    return problems


def heldout_loader(
    dataset: str, base_name: str, val_size: int, max_length: int, batch_size: int
) -> DataLoader | None:
    """Batches of held-out pairs, tokenized as training does, or None when val_size is 0."""
    if not val_size:
        return None
    data = PreferenceDataModule(
        dataset,
        tokenizer=base_name,
        # only the held-out split is used; one train pair keeps setup from tokenizing them all
        train_size=1,
        val_size=val_size,
        max_length=max_length,
        max_prompt_length=max_length // 2,
        batch_size=batch_size,
    )
    data.setup("validate")
    return data.val_dataloader()


def _answer_both(
    policy,
    tokenizer,
    case: PromptCase,
    generation: dict,
    beta: float,
    max_length: int,
    prompt_budget: int,
) -> PromptResult:
    # The prompt is rendered and truncated exactly as training renders a pair's prompt.
    prompt_ids = encode_pair(
        PreferencePair(case.messages, "", ""), tokenizer, max_length, prompt_budget
    )["prompt_ids"]
    # one network: the reference is its adapters off, or its frozen reference adapter; both
    # answer in one batch where PEFT can mix the adapters
    [policy_ids], [reference_ids] = policy_and_reference_answers(
        policy, tokenizer, [prompt_ids], generation
    )
    texts = decode_answer(tokenizer, reference_ids), decode_answer(tokenizer, policy_ids)
    rewards = answer_rewards(
        policy, tokenizer, case.messages, texts, beta, max_length, prompt_budget
    )
    reference_answer, policy_answer = (
        _answer(text, answer_length(tokenizer, ids), reward)
        for text, ids, reward in zip(texts, (reference_ids, policy_ids), rewards, strict=True)
    )
    return PromptResult(case, reference=reference_answer, policy=policy_answer)


def _answer(text: str, tokens: int, reward: float) -> Answer:
    health = answer_health(text)
    return Answer(
        text,
        tokens,
        reward,
        health.refusal,
        evasive=health.evasive,
        repetition=health.repetition,
        distinct_2=health.distinct_2,
        looping=health.looping,
    )


def _token_counter(tokenizer):
    def count(messages: list[dict[str, str]]) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def _judge(
    report: CompareReport, name: str, device: str, dtype: torch.dtype, allow_pickle: bool
) -> None:
    model, tokenizer = load_judge(name, device, dtype, allow_pickle)
    items = [(r.case.messages, a.text) for r in report.results for a in (r.reference, r.policy)]
    scores = judge_scores(model, tokenizer, items)
    for result, reference_score, policy_score in zip(
        report.results, scores[0::2], scores[1::2], strict=True
    ):
        result.reference.judge, result.policy.judge = reference_score, policy_score
    report.judge = win_rate(policy_scores=scores[1::2], reference_scores=scores[0::2])
    report.verdicts += from_scores(
        f"reward_model:{name}",
        ((r.prompt_id, r.case.category, r.policy.judge, r.reference.judge) for r in report.results),
    )


def _ai_judge(report: CompareReport, judge: AIJudge) -> None:
    pairs = [
        Pair(r.prompt_id, r.case.category, r.case.messages, r.policy.text, r.reference.text)
        for r in report.results
    ]
    try:
        run = judge.judge(pairs)
    finally:
        judge.close()
    report.verdicts += run.verdicts()
    report.ai_judge = run.summary()


def _write(report: CompareReport, out: Path) -> None:
    write_report(report, out)
    print(summary_table(report), flush=True)
    print(f"\nreport: {out / 'compare.html'} and {out / 'compare.md'}", flush=True)
