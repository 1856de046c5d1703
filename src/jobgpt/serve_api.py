"""The HTTP side of `jobgpt serve`: the FastAPI app, its guards and its error handling.

The routes live in `jobgpt.serve_routes`; this module holds what they share (`ServerState`)
and what `protect` puts around them:

* `Guard` (ASGI middleware) checks the API key on every API route (``/v1/*``, ``/tokenize``,
  ``/detokenize``) with a constant-time comparison, and refuses bodies over MAX_BODY_BYTES
  (413) before anything parses them.
* The exception handlers render every refusal in OpenAI's error shape: malformed JSON 400,
  wrong types 422, limits 400, a full queue 503 + Retry-After. Anything unexpected becomes a
  generic 500 whose body says nothing about the server (the traceback goes to the log only).
* CORS is off unless `--cors-origin` names one origin.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobgpt.engine import Engine
from jobgpt.generator import TextGenerator
from jobgpt.serve_metrics import CountRequests, Metrics
from jobgpt.serve_schemas import MAX_BODY_BYTES, APIError, error_body

logger = logging.getLogger(__name__)

MODEL_ID = "jobgpt"  # the one model served; requests may name any model
LOADING_RETRY_S = 5  # Retry-After while the model loads
BUSY_RETRY_S = 1  # Retry-After when the queue is full: slots free up every decoding step


@dataclass
class ServerState:
    """What the routes share. The model arrives later (loaded in a thread while the server
    already answers /health with 503), so routes ask `ready()` for it."""

    api_key: str | None = None
    device: str = "cpu"
    timeout: float = 120.0
    generator: TextGenerator | None = None
    engine: Engine | None = None
    card: dict[str, Any] = field(default_factory=dict)  # the model card of /v1/models
    started: float = field(default_factory=time.monotonic)

    def ready(self) -> tuple[TextGenerator, Engine]:
        if self.generator is None or self.engine is None:
            raise APIError(
                503,
                "the model is still loading (모델을 불러오는 중입니다): try again shortly",
                code="model_loading",
                kind="server_error",
                headers={"Retry-After": str(LOADING_RETRY_S)},
            )
        return self.generator, self.engine

    def stats(self) -> dict[str, Any] | None:
        return self.engine.stats() if self.engine is not None else None


def protect(app: FastAPI, state: ServerState, metrics: Metrics, cors_origin: str | None) -> None:
    """The error handlers and middleware around the routes (`jobgpt.serve_routes`)."""
    app.add_exception_handler(APIError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_crash)
    # Added last = outermost: CORS headers go on every answer, refusals included.
    app.add_middleware(Guard, api_key=state.api_key)
    app.add_middleware(CountRequests, metrics=metrics)
    if cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[cors_origin],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


# --- the guard: API key, body size ---------------------------------------------------------------


def is_api_route(path: str) -> bool:
    return path.startswith("/v1/") or path in ("/v1", "/tokenize", "/detokenize")


class Guard:
    """ASGI middleware: the API key on API routes, then the body limit on every request."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if self.api_key and is_api_route(scope["path"]):
                self._check_key(scope)
            body = await _read_body(scope, receive)
        except APIError as err:
            await _on_api_error(None, err)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_key(self, scope: Scope) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.decode("latin-1").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(
                401,
                "missing API key: send it as `Authorization: Bearer KEY` (API 키가 필요합니다)",
                code="missing_api_key",
                headers=challenge,
            )
        assert self.api_key is not None
        # compare_digest: the time taken does not tell how much of a guess was right
        if not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise APIError(
                401, "invalid API key (API 키가 올바르지 않습니다)", code="invalid_api_key",
                headers=challenge,
            )  # fmt: skip


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The whole body, refused (413) as soon as it passes MAX_BODY_BYTES: a declared
    Content-Length before reading anything, a chunked body while it arrives."""
    too_large = APIError(
        413,
        f"the request body is larger than {MAX_BODY_BYTES:,} bytes (요청이 너무 큽니다)",
        code="request_too_large",
    )
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, "the Content-Length header is not a number")
        if int(declared) > MAX_BODY_BYTES:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: what came is all there is
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            raise too_large
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read ahead once, then passes on (to the disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


# --- errors in OpenAI's shape --------------------------------------------------------------------


def _on_api_error(request: Request | None, err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


# pydantic marks the member of a union in an error's location ("prompt", "list[str]", 0); a
# parameter name is the other parts
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _param(loc: tuple[Any, ...]) -> str:
    parts = loc[1:] if loc and loc[0] == "body" else loc
    return ".".join(
        str(p)
        for p in parts
        if isinstance(p, int) or (_NAME.fullmatch(str(p)) and p not in _TYPE_TAGS)
    )


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """One precise message for pydantic's errors: the parameter, what it should be. Only
    pydantic's messages go out, never the input it quotes (or anything of the server)."""
    if any(e["type"] == "json_invalid" for e in errors):
        return APIError(
            400, "the request body is not valid JSON (요청 본문이 올바른 JSON이 아닙니다)",
            code="invalid_json",
        )  # fmt: skip
    param = _param(errors[0]["loc"])
    if not param:
        return APIError(
            422,
            "the request body must be a JSON object with the request's fields "
            "(요청 본문은 JSON 객체여야 합니다)",
            code="invalid_body",
        )
    if errors[0]["type"] == "missing":
        return APIError(422, f"`{param}` is required", param=param, code="missing_field")
    # a union (prompt: str | list[str]) fails once per member: say what each wanted
    said = dict.fromkeys(
        e["msg"] if _param(e["loc"]) == param else f"`{_param(e['loc'])}`: {e['msg']}"
        for e in errors
        if _param(e["loc"]).startswith(param)
    )
    message = f"invalid `{param}`: {'; or '.join(said)}"
    return APIError(422, message, param=param, code="invalid_type")


def _on_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
    return _on_api_error(request, validation_error(list(err.errors())))


def _on_http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    messages = {404: "not found: see /docs for the routes", 405: "method not allowed"}
    message = messages.get(err.status_code, "the request was refused")
    body = error_body(message, "invalid_request_error", code=str(err.status_code))
    return JSONResponse(body, status_code=err.status_code, headers=err.headers)


def _on_crash(request: Request, err: Exception) -> JSONResponse:
    # Logged with its traceback here; the client learns only that it was not its fault.
    logger.error("internal error", exc_info=err)
    body = error_body("internal server error (서버 내부 오류)", "server_error")
    return JSONResponse(body, status_code=500)
