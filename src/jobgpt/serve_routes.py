"""The routes of `jobgpt serve`: health, models, completions, chat, tokenize, metrics, the page.

Nothing here decodes: a route checks the request, encodes the prompt in a worker thread (a long
posting is fitted to the context by repeated encoding, which must not stall the event loop),
submits it to the engine (`jobgpt.engine`: continuous batching on its own thread) and relays
the engine's events (`jobgpt.serve_stream`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from jobgpt.engine import Engine, QueueFull, SamplingParams
from jobgpt.errors import ConfigError
from jobgpt.generator import Prompt, TextGenerator
from jobgpt.serve_api import BUSY_RETRY_S, MODEL_ID, ServerState, protect
from jobgpt.serve_metrics import Metrics
from jobgpt.serve_schemas import (
    MAX_SEED,
    APIError,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    check_context,
    logprob_count,
    prompt_list,
    question_and_posting,
    refuse_unsupported,
    sample_count,
    sampling_params,
)
from jobgpt.serve_stream import Job, collect, sse

WEB_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
# The page loads nothing from elsewhere, and nothing may load it into a frame.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499  # nginx's status for "the client left first"; only the metrics see it


def create_app(state: ServerState, cors_origin: str | None = None) -> FastAPI:
    app = FastAPI(
        title="jobgpt",
        description="An OpenAI-compatible API for a small Korean job-posting GPT.",
        version="1",
    )
    metrics = Metrics(state.stats)
    _add_info_routes(app, state, metrics)
    _add_generation_routes(app, state, metrics)
    protect(app, state, metrics, cors_origin)
    return app


def _add_info_routes(app: FastAPI, state: ServerState, metrics: Metrics) -> None:
    web = {name: _web_file(name) for name in ("index.html", *WEB_FILES)}

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(web["index.html"], headers=PAGE_HEADERS)

    @app.get("/web/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in WEB_FILES:  # a fixed list: no path ever reaches the file system
            raise APIError(404, "not found", code="404")
        return Response(web[name], media_type=WEB_FILES[name], headers=PAGE_HEADERS)

    @app.get("/health")
    def health() -> JSONResponse:
        stats = state.stats()
        body: dict[str, Any] = {
            "status": "ok" if stats is not None else "loading",
            "device": state.device,
            "auth": state.api_key is not None,  # the page asks for a key when set
        }
        if stats is not None:
            body.update(active=stats["active"], queued=stats["queued"],
                        max_batch=stats["max_batch"], steps=stats["steps"])  # fmt: skip
            if state.engine is not None and state.engine.threads is not None:
                body["threads"] = state.engine.threads.describe()  # "2 threads (measured: ...)"
        return JSONResponse(body, status_code=200 if stats is not None else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        state.ready()
        return {"object": "list", "data": [state.card]}

    @app.post("/tokenize")
    def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        gen, _ = state.ready()
        if body.add_special_tokens:
            ids = gen.encode_prompt(body.prompt)
        else:
            ids = gen.tokenizer.encode(body.prompt, add_special_tokens=False).ids
        context = gen.model.config.block_size
        return {"tokens": ids, "count": len(ids), "max_model_len": context}

    @app.post("/detokenize")
    def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        gen, _ = state.ready()
        vocab = gen.tokenizer.get_vocab_size()
        bad = next((i for i in body.tokens if not 0 <= i < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside 0..{vocab - 1}", param="tokens")
        return {"prompt": gen.tokenizer.decode(body.tokens, skip_special_tokens=False)}


def _web_file(name: str) -> str:
    return resources.files("jobgpt").joinpath("web", name).read_text(encoding="utf-8")


def _add_generation_routes(app: FastAPI, state: ServerState, metrics: Metrics) -> None:
    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        gen, engine = state.ready()
        refuse_unsupported(body)
        prompts, n = prompt_list(body.prompt), sample_count(body.n)
        k = None if body.logprobs is None else logprob_count(body.logprobs, "logprobs")
        params = sampling_params(body, body.max_tokens, _engine_logprobs(k))
        prepared = await asyncio.to_thread(_prepare_texts, gen, prompts, params.max_tokens)
        job = _submit(engine, prepared, params, n, state, chat=False, top_logprobs=k)
        job.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _respond(job, bool(body.stream), request, metrics)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        gen, engine = state.ready()
        refuse_unsupported(body)
        question, posting = question_and_posting(body)
        n = sample_count(body.n)
        k = logprob_count(body.top_logprobs, "top_logprobs") if body.logprobs else None
        newer = body.max_completion_tokens is not None  # the newer name wins, as at OpenAI
        max_tokens = body.max_completion_tokens if newer else body.max_tokens
        max_param = "max_completion_tokens" if newer else "max_tokens"
        params = sampling_params(body, max_tokens, _engine_logprobs(k), max_param)
        prompt = await asyncio.to_thread(_prepare_qa, gen, question, posting, params.max_tokens)
        job = _submit(engine, [prompt], params, n, state, chat=True, top_logprobs=k)
        job.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _respond(job, bool(body.stream), request, metrics)


def _engine_logprobs(k: int | None) -> int:
    """The engine's logprobs setting: 0 is "none" there, so k = 0 (the chosen token's
    log-probability, no alternatives) asks it for one and shows none of the alternatives."""
    return 0 if k is None else max(k, 1)


def _prepare_texts(gen: TextGenerator, prompts: list[str], max_tokens: int) -> list[Prompt]:
    prepared = []
    for i, text in enumerate(prompts):
        prompt = gen.prepare(text)
        n_tokens = len(prompt.ids) + (1 if prompt.healed else 0)  # healing took one off
        param = "prompt" if len(prompts) == 1 else f"prompt.{i}"
        check_context(n_tokens, gen.model.config.block_size, max_tokens, param)
        prepared.append(prompt)
    return prepared


def _prepare_qa(gen: TextGenerator, question: str, posting: str, max_tokens: int) -> Prompt:
    """The question-answer prompt; a posting too long for the context is cut in the middle
    (`TextGenerator.qa_prompt`), so only a too-long question is refused."""
    room = min(max_tokens, gen.model.config.block_size // 8)
    try:
        text = gen.qa_prompt(question, posting, answer_room=room)
    except ConfigError as err:
        raise APIError(
            400, f"{err.message}; {err.hint}", param="messages", code="context_length_exceeded"
        ) from None
    return gen.prepare(text)


def _submit(
    engine: Engine,
    prompts: list[Prompt],
    params: SamplingParams,
    n: int,
    state: ServerState,
    *,
    chat: bool,
    top_logprobs: int | None,
) -> Job:
    """n handles per prompt (sample j with seed + j, so n samples differ but repeat); all or
    none: a full queue cancels those already submitted."""
    handles, prompt_of = [], []
    try:
        for p, prompt in enumerate(prompts):
            for j in range(n):
                seed = None if params.seed is None else (params.seed + j) % (MAX_SEED + 1)
                handles.append(engine.submit(prompt, dataclasses.replace(params, seed=seed)))
                prompt_of.append(p)
    except QueueFull:
        for handle in handles:
            handle.cancel()
        raise APIError(
            503,
            "the server is busy: its queue is full (서버가 바쁩니다): try again shortly",
            code="server_busy",
            kind="server_error",
            headers={"Retry-After": str(BUSY_RETRY_S)},
        ) from None
    except ConfigError as err:  # a value the engine refuses that the limits above let through
        for handle in handles:
            handle.cancel()
        raise APIError(400, err.message) from None
    except RuntimeError:  # the engine is stopping
        for handle in handles:
            handle.cancel()
        raise APIError(503, "the server is shutting down", kind="server_error") from None
    return Job(chat, MODEL_ID, handles, prompt_of, top_logprobs, timeout=state.timeout)


class JobStream(StreamingResponse):
    """A streamed job whose handles are cancelled however the response ends, even when the
    client is gone before the first chunk (the chunk generator never starts then)."""

    def __init__(self, job: Job, metrics: Metrics) -> None:
        super().__init__(sse(job, metrics), media_type="text/event-stream", headers=STREAM_HEADERS)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


async def _respond(job: Job, stream: bool, request: Request, metrics: Metrics) -> Response:
    if stream:
        return JobStream(job, metrics)
    work = asyncio.create_task(collect(job, metrics))
    gone = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        left = not work.done()
        if left:  # the client left (or the server stops): free the slots now
            work.cancel()
            job.cancel()
    if left:
        metrics.disconnects.inc()
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(work.result())


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: nothing else comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
