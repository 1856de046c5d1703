"""Continuous batching: one model serving many requests at once (the engine behind the server).

One scheduler thread owns the model. At every decoding step it admits waiting requests into free
rows of the batch and retires finished, cancelled and timed-out ones, so a short request never
waits for a long one to end, and a new one never waits for the batch to drain.

Each request has its own row of one KV cache (`jobgpt.model.RowPass`): its own length, position,
sampling settings, stop conditions and random generator. A step feeds every row what its cache
lacks: one token for a row that is decoding, its whole prompt for a row just admitted (or the
kept tokens for a row whose context window just slid, as `ContextWindow` does). Rows that take one
token share one forward pass; rows that take several share another, right-padded. Then each row
picks its token with exactly the rules of `generate_tokens`, so a request's text is the text
`TextGenerator.generate` gives for it alone, whatever else shares the batch.

Threads: `submit` and `Handle` may be called from any thread; only the scheduler touches the
model. Events go through a `queue.Queue`: `Handle.events` blocks on it, `Handle.aevents` is woken
with `call_soon_threadsafe` and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jobgpt.checks import check_generation, check_sampling, require
from jobgpt.generator import Prompt, SampleText, TextGenerator
from jobgpt.sampling import crop_prompt, penalize_repetition, sample_next
from jobgpt.threads import ThreadPolicy

logger = logging.getLogger(__name__)

MAX_LOGPROBS = 20  # OpenAI's bound on top log-probabilities per token


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: a fresh random seed
    logprobs: int = 0  # top-k log-probabilities per generated token (0 = none), OpenAI style


@dataclass(frozen=True)
class Event:
    """One streamed piece of one request."""

    text: str  # new text (never half a character; may be "")
    token_ids: list[int]  # the tokens this piece covers (a stop token included, never shown)
    logprobs: list[dict] | None  # per token: {"token": str, "logprob": float, "top": {str: float}}
    # None while running; on the last event "stop" | "length" | "cancelled" | "timeout", or
    # "error" when a decoding step failed (logged; the engine keeps serving the others)
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class QueueFull(Exception):
    """`submit` when `max_queue` requests already wait: the caller should answer "busy"."""


class Handle:
    """The caller's side of one request: its events, and a way to cancel it."""

    def __init__(self, prompt_tokens: int, wake_engine: Callable[[], None]) -> None:
        self.prompt_tokens = prompt_tokens
        self.cancelled = False
        self._events: queue.Queue[Event] = queue.Queue()
        self._wake_engine = wake_engine
        self._wake_reader: Callable[[], None] | None = None  # set by aevents

    def cancel(self) -> None:
        """Stop generating; the row is freed at the next step, the last event says "cancelled"."""
        self.cancelled = True
        self._wake_engine()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """The request's events, blocking; TimeoutError when none comes within `timeout` s.

        Leaving the loop before the last event cancels the request (a client that went away).
        """
        finished = False
        try:
            while not finished:
                try:
                    event = self._events.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError(f"no event within {timeout} s") from None
                finished = event.finish_reason is not None
                yield event
        finally:
            if not finished:
                self.cancel()

    async def aevents(self) -> AsyncIterator[Event]:
        """The request's events for asyncio code; waiting never blocks the event loop."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        self._wake_reader = lambda: loop.call_soon_threadsafe(ready.set)
        finished = False
        try:
            while not finished:
                ready.clear()  # before looking: an event put after this look sets it again
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    await ready.wait()
                    continue
                finished = event.finish_reason is not None
                yield event
        finally:
            self._wake_reader = None
            if not finished:
                self.cancel()

    def _deliver(self, event: Event) -> None:
        """Called by the scheduler thread."""
        self._events.put(event)
        wake = self._wake_reader
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # its event loop has closed: nobody listens
                wake()


class _Request:
    """One request's state, owned by the scheduler thread once submitted."""

    def __init__(self, prompt: Prompt, params: SamplingParams, text: SampleText, engine: Engine):
        self.params = params
        self.text = text
        self.handle = Handle(len(prompt.ids), engine._wake)
        self.deadline = time.monotonic() + engine.timeout  # time in the queue counts too
        self.first_allowed = prompt.first_allowed  # (V,) bool, token healing: first token only
        # the tokens of the sequence: the prompt cropped to the context, then generated ones
        self.tokens = crop_prompt(torch.tensor([prompt.ids]), engine.block_size)[0].tolist()
        self.start = 0  # index in `tokens` of the first token the model sees (ContextWindow)
        self.row = -1  # its cache row while running
        self.generator: torch.Generator | None = None
        self.seen: torch.Tensor | None = None  # (1, V) generated tokens, for the penalty
        self.n_generated = 0
        self.pending_ids: list[int] = []  # tokens not yet sent in an event
        self.pending_logprobs: list[dict] = []

    def end_reason(self, now: float) -> str | None:
        """Why the request must end now, from outside the token stream."""
        if self.handle.cancelled:
            return "cancelled"
        return "timeout" if now > self.deadline else None


class Engine:
    """Runs `generator`'s model for up to `max_batch` requests at once, from one thread."""

    def __init__(
        self,
        generator: TextGenerator,
        max_batch: int = 8,
        max_queue: int = 64,
        timeout: float = 120.0,
        threads: ThreadPolicy | None = None,  # CPU threads per step; None: torch's, as they are
    ) -> None:
        self.generator = generator
        self.threads = threads
        self.model = generator.model
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.timeout = timeout
        self.block_size = self.model.config.block_size
        self.vocab_size = self.model.config.vocab_size
        self.keep = max(1, self.block_size // 2)  # tokens kept when a row's window slides
        self._cond = threading.Condition()  # guards the queue, the rows and the counters
        self._queue: deque[_Request] = deque()
        self._active: dict[int, _Request] = {}  # cache row -> its request
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._cache = self.model.new_cache(max_batch)
        self._steps = 0
        self._tokens_generated = 0

    # --- the caller's side (any thread) ---------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread (a daemon: it never keeps the process alive)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="jobgpt-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the current step, end every request as "cancelled", and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(self, prompt: str | Prompt, params: SamplingParams) -> Handle:
        """Queue a request; ConfigError for bad settings, QueueFull when the queue is full."""
        check_sampling(params.temperature, params.top_k, params.top_p, params.repetition_penalty)
        check_generation(1, params.max_tokens, params.stop)
        require(
            0 <= params.logprobs <= MAX_LOGPROBS,
            f"logprobs {params.logprobs} is outside 0..{MAX_LOGPROBS}",
            "ask for 0 (none) or up to 20 top tokens",
        )
        if isinstance(prompt, str):
            prompt = self.generator.prepare(prompt)  # token healing, as `jobgpt generate`
        require(
            len(prompt.ids) > 0 and all(0 <= i < self.vocab_size for i in prompt.ids),
            f"the prompt has no tokens, or ids outside the vocabulary of {self.vocab_size}",
            "give text, or ids from this model's tokenizer (`TextGenerator.prepare`)",
        )
        request = _Request(prompt, params, self.generator.sample_text(prompt, params.stop), self)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the engine is stopping")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are already waiting")
            self._queue.append(request)
            self._cond.notify()
        return request.handle

    def stats(self) -> dict:
        with self._cond:
            return {
                "active": len(self._active),
                "queued": len(self._queue),
                "max_batch": self.max_batch,
                "steps": self._steps,
                "tokens_generated": self._tokens_generated,
                "threads": self.threads.threads if self.threads and self.threads.enabled else None,
            }

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # --- the scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._end_expired()
                    self._admit()
                    if self._active:
                        self._step()
                except Exception:  # a bug or out of memory: fail these requests, keep serving
                    logger.exception("decoding step failed: ending the running requests")
                    for request in list(self._active.values()):
                        self._close(request, "", "error")
        for request in self._everyone():
            self._close(request, "", "cancelled")

    def _everyone(self) -> list[_Request]:
        with self._cond:
            return [*self._queue, *self._active.values()]

    def _wait_for_work(self) -> bool:
        """Sleep (no busy wait) until a request waits or runs; False once stop() was called."""
        with self._cond:
            while not (self._stopping or self._queue or self._active):
                self._cond.wait()
            return not self._stopping

    def _end_expired(self) -> None:
        """End cancelled and timed-out requests, waiting or running: their rows free up now."""
        now = time.monotonic()
        for request in self._everyone():
            if reason := request.end_reason(now):
                end = request.text.finish(reason)  # flush held-back text
                self._close(request, end.text, reason)

    def _admit(self) -> None:
        """Give waiting requests the free rows; they prefill in this very step."""
        with self._cond:
            while self._queue and len(self._active) < self.max_batch:
                request = self._queue.popleft()
                request.row = min(set(range(self.max_batch)) - set(self._active))
                self._active[request.row] = request
        for request in self._active.values():
            if request.generator is None:
                self._prepare_row(request)

    def _prepare_row(self, request: _Request) -> None:
        device, params = self.generator.device, request.params
        self._cache.lengths[request.row] = 0  # the previous request's keys are never seen
        # its own generator: a seeded request gives the same text, whoever shares the batch
        seed = random.getrandbits(63) if params.seed is None else params.seed
        request.generator = torch.Generator(device=device).manual_seed(seed)
        if request.first_allowed is not None:
            request.first_allowed = request.first_allowed.to(device)
        if params.repetition_penalty != 1.0:
            request.seen = torch.zeros(1, self.vocab_size, dtype=torch.bool, device=device)

    def _step(self) -> None:
        """One decoding step: every running request gets one new token."""
        requests = list(self._active.values())
        if self.threads:
            self.threads.before_step()
        logits = self._forward(requests, [self._unseen(r) for r in requests])  # (b, V)
        chosen = [_choose(r, logits[i : i + 1]) for i, r in enumerate(requests)]
        token_ids = torch.cat(chosen).tolist()  # the one device sync per step
        if self.threads:
            self.threads.after_step(len(requests))
        for i, (request, token_id) in enumerate(zip(requests, token_ids, strict=True)):
            if request.params.logprobs:
                request.pending_logprobs.append(self._logprobs(logits[i], token_id, request))
            self._add_token(request, token_id)
        with self._cond:
            self._steps += 1
            self._tokens_generated += len(requests)

    def _unseen(self, request: _Request) -> list[int]:
        """The tokens the row's cache lacks; slides a full window as `ContextWindow` does."""
        if len(request.tokens) - request.start > self.block_size:
            request.start = len(request.tokens) - self.keep
            self._cache.lengths[request.row] = 0  # re-prefill the kept tokens
        return request.tokens[request.start + int(self._cache.lengths[request.row]) :]

    def _forward(self, requests: list[_Request], feeds: list[list[int]]) -> torch.Tensor:
        """Next-token logits (b, V) of each request, given the tokens to feed each row.

        Rows decoding one token share one pass; rows (re-)prefilling share another, padded to
        the longest: prompt-length work is not repeated for the one-token rows.
        """
        logits: list[torch.Tensor] = [torch.empty(0)] * len(requests)
        for several in (False, True):
            group = [i for i, feed in enumerate(feeds) if (len(feed) > 1) == several]
            if not group:
                continue
            n_new = [len(feeds[i]) for i in group]
            idx = torch.zeros(len(group), max(n_new), dtype=torch.long)  # (g, T), right-padded
            for j, i in enumerate(group):
                idx[j, : n_new[j]] = torch.tensor(feeds[i])
            rows = [requests[i].row for i in group]
            idx = idx.to(self.generator.device)
            out, _ = self.model(idx, cache=self._cache, rows=rows, n_new=n_new)  # (g, T, V)
            for j, i in enumerate(group):
                logits[i] = out[j, n_new[j] - 1]  # (V,) after the row's last real token
        return torch.stack(logits)

    def _logprobs(self, logits: torch.Tensor, token_id: int, request: _Request) -> dict:
        """The chosen token's log-probability and the top ones, under the model's raw logits
        (before temperature, top-k/top-p, penalty and healing: what the model itself thinks)."""
        logp = F.log_softmax(logits.float(), dim=-1)  # (V,)
        top_values, top_ids = logp.topk(request.params.logprobs)
        piece = self.generator.tokenizer.id_to_token  # vocabulary pieces: unique, e.g. "<0xEB>"
        top = {piece(i): v for i, v in zip(top_ids.tolist(), top_values.tolist(), strict=True)}
        return {"token": piece(token_id), "logprob": logp[token_id].item(), "top": top}

    def _add_token(self, request: _Request, token_id: int) -> None:
        """Record the token, turn it into text, and send an event when there is any."""
        request.n_generated += 1
        request.tokens.append(token_id)
        request.pending_ids.append(token_id)
        if request.seen is not None:
            request.seen[0, token_id] = True
        piece = request.text.push(token_id)
        text, reason = (piece.text, piece.finish_reason) if piece else ("", None)
        if reason is None and request.n_generated >= request.params.max_tokens:
            end = request.text.finish("length")  # flush held-back text
            text, reason = text + end.text, end.finish_reason
        if reason:
            self._close(request, text, reason)
        elif text:  # tokens of an unfinished character wait for the next event
            self._send(request, text, None)

    def _send(self, request: _Request, text: str, reason: str | None) -> None:
        logprobs = request.pending_logprobs if request.params.logprobs else None
        counts = request.handle.prompt_tokens, request.n_generated
        event = Event(text, request.pending_ids, logprobs, reason, *counts)
        request.pending_ids, request.pending_logprobs = [], []
        request.handle._deliver(event)

    def _close(self, request: _Request, text: str, reason: str) -> None:
        """Send the request's last event and free its row (or its place in the queue)."""
        with self._cond:
            if self._active.get(request.row) is request:
                del self._active[request.row]
            elif request in self._queue:
                self._queue.remove(request)
        self._send(request, text, reason)


def _choose(request: _Request, logits: torch.Tensor) -> torch.Tensor:
    """The request's next token from its logits (1, V): the rules of `generate_tokens`."""
    params = request.params
    if request.n_generated == 0 and request.first_allowed is not None:
        logits = logits.masked_fill(~request.first_allowed, float("-inf"))
    if request.seen is not None:
        logits = penalize_repetition(logits, request.seen, params.repetition_penalty)
    return sample_next(logits, params.temperature, params.top_k, params.top_p, request.generator)
