"""The model ``lit-dpo serve`` answers with, and the one thread that generates with it.

One copy of the weights serves both names: ``policy`` is the base with the trained LoRA adapter
on, and ``reference`` is the reference training measured against: the same network under peft's
``disable_adapter()``, or, when the run had one, its frozen reference adapter attached beside the
policy's on the same base (``models.reference.as_reference``). It is loaded by the loader
``compare`` and ``export`` use (``models.inference.load_for_inference``): 4-bit NF4 by default, as
training loads it, the adapters attached frozen.

A :class:`Worker` thread owns the model and runs one :class:`Job` at a time, so requests never
share state (the adapter switch, the random generator seeded per request); jobs wait in a bounded
queue that refuses more.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

# is_merged_model stays importable from here for serve.command
from lit_dpo.models.inference import is_merged_model as is_merged_model
from lit_dpo.models.inference import load_for_inference
from lit_dpo.models.policy import DType, Quantization
from lit_dpo.models.reference import as_reference
from lit_dpo.serve.api import FinishReason, cut_at_stop
from lit_dpo.sources import pad_token_id

log = logging.getLogger(__name__)

POLICY, REFERENCE = "policy", "reference"
# The names 0.1 served, still answered for one release (deprecated): old name -> served name.
DEPRECATED_NAMES = {"aligned": POLICY, "base": REFERENCE}


@dataclass(frozen=True)
class ServedModel:
    """What the server answers with.

    Args:
        model: a PeftModel (served as ``policy`` and ``reference``) or a merged model (``policy``).
        tokenizer: its tokenizer, with a chat template.
        names: the model names requests may ask for.
        context_length: most tokens (prompt and reply together) the model takes.
        source: what was loaded, for ``/health`` and the log.
    """

    model: Any
    tokenizer: Any
    names: tuple[str, ...]
    context_length: int
    source: dict[str, str]


def load_served_model(
    adapter: Path,
    model: str | None = None,
    quantization: Quantization = "nf4",
    compute_dtype: DType = "float32",
    device: str = "cpu",
    allow_pickle: bool = False,
    reference_adapter: Path | None = None,
) -> ServedModel:
    """Load the adapter on its base for generation, as ``compare`` loads it
    (:func:`lit_dpo.models.inference.load_for_inference`).

    Args:
        adapter: a PEFT adapter folder, or a merged model folder (served alone as ``policy``).
        model: the base (hub id, folder, ``embedded:...``); None: the base the adapter records in
            its ``adapter_config.json``.
        quantization: ``nf4`` (the 4-bit base of training) or ``none``.
        compute_dtype: dtype of the 4-bit matmuls and of the other weights.
        device: where the weights go (``cpu``, ``cuda``, ``cuda:1``).
        allow_pickle: also read weights stored as pickles (``.bin``); else safetensors only.
        reference_adapter: an adapter folder served as ``reference``, frozen beside the policy's
            (the checks of ``serve.command`` have passed); None: the reference is adapters off.

    Raises:
        ConfigError: the adapter records a base folder that is not here and ``model`` is None,
            or an adapter does not fit the model.
        ModelSourceError: the base or the adapter cannot be loaded.
    """
    # serve has no option to run model code from the hub
    loaded = load_for_inference(
        adapter, model, reference_adapter, quantization, compute_dtype, device, allow_pickle
    )
    source = {"adapter": str(adapter), "model": loaded.base, "quantization": quantization}
    if not loaded.merged:
        source["reference"] = "base"
        if loaded.reference_adapter is not None:
            source.update(reference="adapter", reference_adapter=loaded.reference_adapter)
    config = loaded.model.config
    return ServedModel(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        names=(POLICY,) if loaded.merged else (POLICY, REFERENCE),
        context_length=getattr(config, "max_position_embeddings", None) or 2048,
        source=source,
    )


def sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    """OpenAI sampling -> ``generate`` kwargs: temperature 0 is greedy, top_k is off as in OpenAI
    (transformers would otherwise apply the model's or its own default of 50)."""
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


@dataclass
class Job:
    """One request as the worker runs it; ``result`` gets a Completion or the error.

    Args:
        prompt_ids: the rendered chat, ending with the generation prompt.
        max_new_tokens: most tokens to generate.
        use_adapter: True for ``policy``, False for ``reference``.
        sampling: ``generate`` kwargs from :func:`sampling_kwargs`.
        seed: seeds the random generator before this job alone, when given.
        stops: strings that end the reply (not included in it).
        streamer: receives the text as it is generated (streamed requests).
    """

    prompt_ids: list[int]
    max_new_tokens: int
    use_adapter: bool
    sampling: dict[str, Any]
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    streamer: TextIteratorStreamer | None = None
    result: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None

    def end_stream(self) -> None:
        # generate ends the streamer when it finishes; ending it again after an error or a
        # cancellation means the reader never waits forever. A reader stops at the first end.
        if self.streamer is not None:
            self.streamer.end()


class Cancelled(Exception):
    """The request was cancelled: its client left, or the server is shutting down."""


class _Halt(StoppingCriteria):
    """Stop when the job is cancelled, or once the reply contains a stop string."""

    def __init__(self, job: Job, tokenizer: Any) -> None:
        self.job, self.tokenizer = job, tokenizer

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        halt = self.job.cancelled.is_set()
        if not halt and self.job.stops:
            reply = self.tokenizer.decode(
                input_ids[0, len(self.job.prompt_ids) :], skip_special_tokens=True
            )
            halt = cut_at_stop(reply, self.job.stops)[1]
        return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)


class Worker:
    """Runs jobs one at a time on a thread that owns the model.

    Args:
        served: the model and tokenizer.
        queue_size: jobs that may wait behind the running one; ``submit`` refuses more.
    """

    def __init__(self, served: ServedModel, queue_size: int) -> None:
        self.served = served
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._running: Job | None = None
        self._closed = False
        eos = served.model.generation_config.eos_token_id
        eos = [] if eos is None else eos if isinstance(eos, list) else [eos]
        # Chat models often end a turn with a token that is not the tokenizer's eos (Qwen2 lists
        # both in generation_config): stop at either.
        self.eos_ids = sorted({served.tokenizer.eos_token_id, *eos} - {None})
        self.pad_id = pad_token_id(served.tokenizer)
        self._thread = threading.Thread(target=self._loop, name="lit-dpo-generate", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._jobs.qsize()

    @property
    def busy(self) -> bool:
        return self._running is not None

    def submit(self, job: Job) -> None:
        """Queue a job.

        Raises:
            queue.Full: ``queue_size`` jobs are already waiting.
            Cancelled: the worker is closed.
        """
        if self._closed:
            raise Cancelled("the server is shutting down")
        self._jobs.put_nowait(job)

    def close(self, timeout: float = 10.0) -> int:
        """Cancel the running job and every waiting one, stop the thread; returns jobs cancelled."""
        cancelled = self.cancel_all()
        self._jobs.put(None)
        self._thread.join(timeout)
        return cancelled

    def cancel_all(self) -> int:
        """Refuse new jobs, fail the waiting ones with :class:`Cancelled` and stop the running one
        (it completes with the text so far), without waiting; returns jobs cancelled."""
        self._closed = True
        cancelled = 0
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if job is not None and job.result.set_running_or_notify_cancel():
                    job.result.set_exception(Cancelled("the server is shutting down"))
                    job.end_stream()
                    cancelled += 1
        running = self._running
        if running is not None:
            running.cancelled.set()
            cancelled += 1
        return cancelled

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            # False when the request was cancelled while it waited (its client went away).
            if not job.result.set_running_or_notify_cancel():
                job.end_stream()
                continue
            self._running = job
            try:
                if self._closed:  # taken off the queue just as close() emptied it
                    raise Cancelled("the server is shutting down")
                if job.cancelled.is_set():
                    raise Cancelled("the request was cancelled before it started")
                completion = self._generate(job)
            except Exception as error:
                if not isinstance(error, Cancelled):
                    log.exception("generation failed")
                job.result.set_exception(error)
            else:
                job.result.set_result(completion)
            finally:
                self._running = None
                job.end_stream()

    def _generate(self, job: Job) -> Completion:
        job.started_at = time.perf_counter()
        model, tokenizer = self.served.model, self.served.tokenizer
        prompt = torch.tensor([job.prompt_ids], device=model.device)
        if job.seed is not None:
            torch.manual_seed(job.seed)
        adapter = contextlib.nullcontext() if job.use_adapter else as_reference(model)
        with adapter, torch.no_grad():
            output = model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=job.max_new_tokens,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([_Halt(job, tokenizer)]),
                streamer=job.streamer,
                **job.sampling,
            )
        reply = output[0, len(job.prompt_ids) :].tolist()
        text, stopped = cut_at_stop(tokenizer.decode(reply, skip_special_tokens=True), job.stops)
        ended = stopped or reply[-1] in self.eos_ids
        return Completion(text, len(job.prompt_ids), len(reply), "stop" if ended else "length")
