"""`jobgpt serve`: a checkpoint behind an OpenAI-compatible HTTP API, with a Korean web page.

    uv run jobgpt serve --checkpoint checkpoints/best.pt     # then open http://127.0.0.1:8000/

Routes (see `jobgpt.serve_routes`): ``GET /health``, ``GET /v1/models``,
``POST /v1/completions``, ``POST /v1/chat/completions`` (the question-answer mode: the last user
message is the question, the posting the user message before it or the ``posting`` field),
``POST /tokenize``, ``POST /detokenize``, ``GET /metrics`` (Prometheus), ``GET /`` (the page)
and ``GET /docs`` (the schema). Limits and the context policy: `jobgpt.serve_schemas`.

Startup order: the port is bound first (a port in use is a one-line error, not a traceback),
the server answers at once (/health says 503 "loading"), and the model loads in a thread; a
checkpoint that fails to load stops the server with the usual one-paragraph error.

Safety: it listens on 127.0.0.1 unless told otherwise, and refuses any other address without an
API key (`--api-key` or JOBGPT_API_KEY), which every API route then checks.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn

from jobgpt.architectures import Model
from jobgpt.checkpoint import load_model
from jobgpt.config import ServeConfig
from jobgpt.engine import Engine
from jobgpt.errors import ConfigError, JobGPTError
from jobgpt.files import os_error
from jobgpt.generator import TextGenerator
from jobgpt.runtime import describe_device, resolve_device
from jobgpt.serve_api import MODEL_ID, ServerState
from jobgpt.serve_routes import create_app
from jobgpt.threads import ThreadPolicy

logger = logging.getLogger(__name__)

API_KEY_ENV = "JOBGPT_API_KEY"
GRACEFUL_S = 5  # at shutdown, streams get this long to finish before they are cut


def run(cfg: ServeConfig) -> None:
    key = api_key(cfg)
    device = resolve_device(cfg.device)  # a wrong --device fails now, not after binding
    state = ServerState(api_key=key, device=describe_device(device), timeout=cfg.timeout)
    app = create_app(state, cfg.cors_origin)
    sock = bind(cfg.host, cfg.port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",  # jobgpt logs its own lines; no access log per request
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_S,
        )
    )
    failure: list[JobGPTError] = []
    loader = threading.Thread(
        target=_load, args=(cfg, state, server, failure), name="jobgpt-load", daemon=True
    )
    loader.start()
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    logger.info("listening on http://%s:%d/ (loading %s...)", shown, cfg.port, cfg.checkpoint)
    try:
        server.run(sockets=[sock])
    finally:
        if state.engine is not None:
            state.engine.stop()  # ends what still runs as "cancelled"
        sock.close()
    if failure:
        raise failure[0]


def api_key(cfg: ServeConfig) -> str | None:
    """The key from --api-key or the environment; refused to run without one off loopback."""
    key = cfg.api_key if cfg.api_key is not None else os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise ConfigError(
            "the API key is empty", f"pass a long random --api-key (or {API_KEY_ENV}), or none"
        )
    if key is None and not is_loopback(cfg.host):
        raise ConfigError(
            f"--host {cfg.host} would let other machines use the model, but no API key is set: "
            "anyone who can reach the port could use it (키 없이 외부 주소로 열 수 없습니다)",
            f"pass --api-key KEY (or set {API_KEY_ENV}); clients then send "
            "`Authorization: Bearer KEY`. Or keep the default --host 127.0.0.1",
        )
    return key.strip() if key is not None else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host} port {port} ({err.strerror or err})",
            "choose another --port (is another server running there?), or another --host",
        ) from None
    return sock


def _load(
    cfg: ServeConfig, state: ServerState, server: uvicorn.Server, failure: list[JobGPTError]
) -> None:
    """Load the model and start the engine; on failure, record the error and stop the server."""
    try:
        model, tokenizer, ckpt = load_model(cfg.checkpoint, cfg.device)
        generator = TextGenerator(model, tokenizer)
        generator.token_texts()  # token healing's table: built now, not by the first request
        threads = ThreadPolicy(pinned=cfg.threads or None, device=generator.device)
        engine = Engine(generator, cfg.max_batch, cfg.max_queue, cfg.timeout, threads)
        engine.start()
    except JobGPTError as err:
        failure.append(err)
    except OSError as err:
        failure.append(os_error(err, f"cannot read {cfg.checkpoint}"))
    except Exception as err:  # out of memory, a bug: still one paragraph, and the server stops
        logger.debug("loading failed", exc_info=True)
        failure.append(JobGPTError(f"loading {cfg.checkpoint} failed ({type(err).__name__})"))
    if failure:
        server.should_exit = True
        return
    state.card = model_card(model, ckpt, Path(cfg.checkpoint).stat().st_mtime)
    state.generator, state.engine = generator, engine  # from here on, /health says "ok"
    logger.info(
        "ready: %.2fM parameters, context %d tokens, on %s, decoding threads: %s; web page "
        "http://%s:%d/",
        model.num_params() / 1e6,
        model.config.block_size,
        state.device,
        threads.describe(),
        cfg.host,
        cfg.port,
    )


def model_card(model: Model, ckpt: dict[str, Any], mtime: float) -> dict[str, Any]:
    """/v1/models' entry: OpenAI's fields, then what the checkpoint records of the model. No
    file paths: the data directory and checkpoint location stay on the server."""
    c = model.config
    history = (ckpt.get("monitor") or {}).get("history") or []
    data = ckpt.get("data") or {}
    training: dict[str, Any] = {
        "steps": ckpt.get("step"),
        "tokens_seen": ckpt.get("tokens_seen"),
        "train_tokens": data.get("train_tokens"),
        "val_tokens": data.get("val_tokens"),
        "preset": (ckpt.get("train_config") or {}).get("preset"),
    }
    if history:
        last = history[-1]
        training.update(
            val_loss=last.get("val_loss"),
            val_bpb=last.get("val_bpb"),
            train_loss=last.get("train_loss"),
            best_val_loss=min(h["val_loss"] for h in history),
        )
    return {
        "id": MODEL_ID,
        "object": "model",
        "created": int(mtime),
        "owned_by": "jobgpt",
        "parameters": model.num_params(),
        "context": c.block_size,
        "vocab_size": c.vocab_size,
        "layers": c.n_layer,
        "heads": c.n_head,
        "embedding": c.n_embd,
        "training": training,
    }
