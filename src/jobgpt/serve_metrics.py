"""`GET /metrics` of `jobgpt serve`: Prometheus counters, gauges and latency histograms.

Each server has its own registry (not prometheus-client's global one), so an app built twice in
one process (tests) counts twice nothing. The queue gauges are read from the engine when
scraped, so they are never stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Paths counted under their own name; anything else is "other", so that scanning for random
# URLs cannot grow the label set without bound.
ROUTES = frozenset(
    {
        "/",
        "/health",
        "/metrics",
        "/tokenize",
        "/detokenize",
        "/v1/models",
        "/v1/completions",
        "/v1/chat/completions",
        "/web/app.js",
        "/web/style.css",
    }  # fmt: skip
)


class Metrics:
    def __init__(self, stats: Callable[[], dict[str, Any] | None]) -> None:
        self.stats = stats  # the engine's stats(), None while the model loads
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "jobgpt_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.prompt_tokens = Counter("jobgpt_prompt_tokens", "prompt tokens read", registry=r)
        self.tokens = Counter("jobgpt_generated_tokens", "tokens generated", registry=r)
        self.disconnects = Counter(
            "jobgpt_client_disconnects", "requests whose client left before the end", registry=r
        )
        self.queue_depth = Gauge("jobgpt_queue_depth", "requests waiting for a slot", registry=r)
        self.active = Gauge("jobgpt_active_requests", "requests being decoded", registry=r)
        self.ttft = Histogram(
            "jobgpt_time_to_first_token_seconds",
            "from submission to the first generated text",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.per_token = Histogram(
            "jobgpt_time_per_output_token_seconds",
            "time between generated tokens of one request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        stats = self.stats() or {}
        self.queue_depth.set(stats.get("queued", 0))
        self.active.set(stats.get("active", 0))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class TokenClock:
    """Times one request's stream: time to first token, then time per token."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.start = self.last = time.monotonic()
        self.first = True

    def tick(self, n_tokens: int) -> None:
        if not n_tokens:
            return
        now = time.monotonic()
        if self.first:
            self.metrics.ttft.observe(now - self.start)
            self.first = False
        else:
            # An event may carry several tokens (a held-back character): spread its time.
            for _ in range(n_tokens):
                self.metrics.per_token.observe((now - self.last) / n_tokens)
        self.last = now
        self.metrics.tokens.inc(n_tokens)


class CountRequests:
    """ASGI middleware: every HTTP response counted by route and status, a crash as 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(route=route, status=str(status)).inc()
