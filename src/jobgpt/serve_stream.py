"""From the engine's events to OpenAI's response objects: whole, or streamed as SSE chunks.

A request is a `Job`: one engine handle per choice (n samples of each prompt). Their events are
merged as they come (`merged`), so choices stream side by side, and the handles are cancelled
whenever the consumer stops early: a client that disconnects frees its slots at the engine's
next decoding step. A stream ends with ``data: [DONE]``; with ``stream_options.include_usage``
the chunk before it carries the usage and no choices, as OpenAI sends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from jobgpt.engine import Event, Handle
from jobgpt.serve_metrics import Metrics, TokenClock
from jobgpt.serve_schemas import APIError, answer_fields, error_body

logger = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"


@dataclass
class Job:
    chat: bool  # chat.completion objects (else text_completion)
    model: str
    handles: list[Handle]  # one per choice, in choice order
    prompt_of: list[int]  # choice -> its prompt (usage counts each prompt once)
    top_logprobs: int | None = None  # alternatives per token; None: no logprobs
    include_usage: bool = False
    timeout: float = 0.0  # the engine's limit, for the message
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    def head(self) -> dict[str, Any]:
        kind = ("chat.completion", "chatcmpl") if self.chat else ("text_completion", "cmpl")
        return {"id": f"{kind[1]}-{self.id}", "object": kind[0], "created": self.created,
                "model": self.model}  # fmt: skip

    def usage(self, completion_tokens: int) -> dict[str, int]:
        prompts = {p: h.prompt_tokens for p, h in zip(self.prompt_of, self.handles, strict=True)}
        prompt_tokens = sum(prompts.values())
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


async def merged(job: Job, metrics: Metrics) -> AsyncIterator[tuple[int, Event]]:
    """(choice, event) from all the job's handles, in arrival order; the handles are
    cancelled when the consumer stops early (disconnect, error)."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(choice: int, handle: Handle) -> None:
        clock = TokenClock(metrics)
        try:
            async for event in handle.aevents():
                clock.tick(len(event.token_ids))
                await queue.put((choice, event))
        except Exception as err:  # passed on, so the consumer decides (never lost in a task)
            await queue.put((choice, err))
        finally:
            await queue.put((choice, None))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(job.handles)]
    try:
        running = len(tasks)
        while running:
            choice, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield choice, item
    finally:
        job.cancel()  # a no-op for handles that finished
        for task in tasks:
            task.cancel()


def _end_error(job: Job, reason: str) -> APIError | None:
    """The error for a choice that did not end normally (the engine's timeout, a shutdown)."""
    if reason == "timeout":
        return APIError(
            504,
            f"the request took longer than this server's time limit of {job.timeout:g} s "
            "(요청 시간 초과): ask for fewer tokens",
            code="timeout",
            kind="timeout_error",
        )
    if reason == "cancelled":
        return APIError(503, "the server is shutting down", code="cancelled", kind="server_error")
    if reason == "error":  # a failed decoding step, logged by the engine
        return APIError(500, "internal server error (서버 내부 오류)", kind="server_error")
    return None


async def collect(job: Job, metrics: Metrics) -> dict[str, Any]:
    """The whole (non-streamed) response of a job."""
    texts = [""] * len(job.handles)
    entries: list[list[dict]] = [[] for _ in job.handles]
    ends: list[Event | None] = [None] * len(job.handles)
    async with aclosing(merged(job, metrics)) as events:
        async for choice, event in events:
            texts[choice] += event.text
            entries[choice] += event.logprobs or []
            if event.finish_reason:
                if error := _end_error(job, event.finish_reason):
                    raise error
                ends[choice] = event
    choices = []
    for i, (text, end) in enumerate(zip(texts, ends, strict=True)):
        choice: dict[str, Any] = {"index": i, "finish_reason": end.finish_reason if end else None}
        choice["logprobs"] = _logprobs(job, entries[i])
        if job.chat:
            choice["message"] = {"role": "assistant", "content": text}
            choice["answer_fields"] = answer_fields(text)
        else:
            choice["text"] = text
        choices.append(choice)
    completion_tokens = sum(e.completion_tokens for e in ends if e)
    return {**job.head(), "choices": choices, "usage": job.usage(completion_tokens)}


async def sse(job: Job, metrics: Metrics) -> AsyncIterator[str]:
    """The job as server-sent events: one chunk per piece of text, then [DONE]."""
    texts = [""] * len(job.handles)
    done: dict[int, int] = {}  # choice -> its completion tokens
    head = {**job.head(), "object": "chat.completion.chunk"} if job.chat else job.head()
    extra = {"usage": None} if job.include_usage else {}
    try:
        if job.chat:  # OpenAI opens each choice with the role, and no text yet
            for i in range(len(job.handles)):
                delta = {"role": "assistant", "content": ""}
                yield _data({**head, "choices": [_choice(job, i, delta, None)], **extra})
        async with aclosing(merged(job, metrics)) as events:
            async for choice, event in events:
                reason = event.finish_reason
                if reason and (error := _end_error(job, reason)):
                    yield _data(error.body())
                    break
                texts[choice] += event.text
                if event.text or event.logprobs or reason:
                    piece = _choice(job, choice, event.text, _logprobs(job, event.logprobs or []))
                    piece["finish_reason"] = reason
                    if reason and job.chat:
                        piece["answer_fields"] = answer_fields(texts[choice])
                    yield _data({**head, "choices": [piece], **extra})
                if reason:
                    done[choice] = event.completion_tokens
        if job.include_usage and len(done) == len(job.handles):
            yield _data({**head, "choices": [], "usage": job.usage(sum(done.values()))})
        yield DONE
    except (asyncio.CancelledError, GeneratorExit):
        metrics.disconnects.inc()  # the client left: `merged` has cancelled the handles
        raise
    except Exception:  # headers are sent: the status cannot change, the stream says it
        logger.exception("a streamed request failed")
        yield _data(error_body("internal server error (서버 내부 오류)", "server_error"))
        yield DONE
    finally:
        job.cancel()


def _choice(job: Job, index: int, text: str | dict, logprobs: Any = None) -> dict[str, Any]:
    if job.chat:
        delta = text if isinstance(text, dict) else {"content": text}
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": None}


def _data(obj: dict[str, Any]) -> str:
    # ensure_ascii=False: Korean travels as UTF-8, a third of the size of \uXXXX escapes
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _logprobs(job: Job, entries: list[dict]) -> dict[str, Any] | None:
    """OpenAI's logprobs object of the job's kind for these tokens, or None if not asked."""
    if job.top_logprobs is None:
        return None
    k = job.top_logprobs
    if job.chat:
        return {"content": [_chat_token(e, k) for e in entries]}
    offsets, at = [], 0
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [_finite(e["logprob"]) for e in entries],
        "top_logprobs": [{t: _finite(lp) for t, lp in _top(e, k)} for e in entries],
        "text_offset": offsets,
    }


def _top(entry: dict, k: int) -> list[tuple[str, float]]:
    return list(entry["top"].items())[:k]


def _finite(logprob: float) -> float:
    """JSON has no -Infinity (a token the filters ruled out): OpenAI's -9999.0 stands in."""
    return logprob if math.isfinite(logprob) else -9999.0


def _chat_token(entry: dict, k: int) -> dict[str, Any]:
    def one(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": _finite(logprob), "bytes": list(token.encode())}

    top = [one(t, lp) for t, lp in _top(entry, k)]
    return {**one(entry["token"], entry["logprob"]), "top_logprobs": top}
