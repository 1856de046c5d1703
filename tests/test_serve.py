"""`jobgpt serve` against a real server: uvicorn in a subprocess on a free loopback port, two
tiny checkpoints built here. One model has memorised a question-answer example (greedy decoding
gives known Korean text, with syllables spelled in byte tokens); the other repeats one Korean
token forever (for disconnects, time limits and load). Raw HTTP (httpx) reads the SSE stream
chunk by chunk; the `openai` client checks compatibility."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_harness import (
    ANSWER,
    DOC,
    EXAMPLE,
    PROMPT,
    QUESTION,
    Server,
    free_port,
    memorised_checkpoint,
    runaway_checkpoint,
    serving,
    wait_idle,
)

from jobgpt.qa import EOT
from jobgpt.serve import is_loopback
from jobgpt.serve_api import ServerState
from jobgpt.serve_routes import create_app
from jobgpt.serve_schemas import MAX_BODY_BYTES, MAX_N, MAX_STOP, MAX_TOKENS, answer_fields

TIMEOUT_S = 3  # the keyed server's --timeout: a disconnect must free its slot well before it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory, "serve", memorised_checkpoint)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The runaway model, behind an API key, with a small batch and queue and a time limit."""
    flags = ("--api-key", "s3cret", "--max-batch", "4", "--max-queue", "4",
             "--timeout", str(TIMEOUT_S))  # fmt: skip
    yield from serving(tmp_path_factory, "keyed", runaway_checkpoint, *flags)


AUTH = {"Authorization": "Bearer s3cret"}

# A limit no CPU can outrun: the runaway model would need 10,000 tokens in 0.2 s (50,000/s; this
# one writes ~1,000/s on a 2-core CPU), so the limit, not the length, ends every request.
SHORT_LIMIT_S = 0.2


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The runaway model with a time limit far below what its requests need."""
    yield from serving(
        tmp_path_factory, "limited", runaway_checkpoint, "--timeout", str(SHORT_LIMIT_S)
    )


def sse_events(response: httpx.Response) -> Iterator[str]:
    """The `data:` payloads of an SSE response, split on raw bytes as they arrive: each event
    must be whole UTF-8 on its own (no character cut between two events)."""
    buffer = b""
    for chunk in response.iter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            text = event.decode("utf-8")  # strict: a split character would raise here
            assert text.startswith("data: "), text
            yield text.removeprefix("data: ")
    assert buffer == b""


def post(server: Server, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, **{"timeout": 60, **kwargs})


def greedy(server: Server, **extra: Any) -> dict[str, Any]:
    body = {"prompt": PROMPT, "max_tokens": 300, "temperature": 0, **extra}
    response = post(server, "/v1/completions", body)
    assert response.status_code == 200, response.text
    return response.json()


# --- info routes -------------------------------------------------------------------------------


def test_health_and_the_model_card(server: Server) -> None:
    health = server.health()
    assert health["status"] == "ok" and health["device"].startswith("cpu")
    assert health["active"] == 0 and health["queued"] == 0 and health["auth"] is False
    card = httpx.get(server.url + "/v1/models").json()["data"][0]
    assert card["id"] == "jobgpt" and card["object"] == "model" and card["parameters"] > 10_000
    assert card["context"] == 374 and card["training"]["steps"] == 150
    assert card["training"]["val_loss"] == 0.25 and card["training"]["train_tokens"] == 1234
    assert "/secret" not in json.dumps(card)  # the data directory stays on the server


def test_tokenize_and_detokenize_round_trip(server: Server) -> None:
    tokens = post(server, "/tokenize", {"prompt": "뷁카오 채용"}).json()
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 374
    text = post(server, "/detokenize", {"tokens": tokens["tokens"]}).json()["prompt"]
    assert text == EOT + "뷁카오 채용"


def test_the_web_page_and_its_files_are_served(server: Server) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "공고에 질문하기" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert httpx.get(f"{server.url}/web/{name}").status_code == 200
    assert httpx.get(server.url + "/web/..%2Fserve.py").status_code == 404


def test_while_the_model_loads_health_and_the_api_say_503() -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(ServerState())) as client:  # no model (yet)
        assert client.get("/health").json()["status"] == "loading"
        assert client.get("/health").status_code == 503
        reply = client.post("/v1/completions", json={"prompt": "x"})
        assert reply.status_code == 503 and reply.headers["retry-after"].isdigit()
        assert reply.json()["error"]["code"] == "model_loading"
        assert client.get("/openapi.json").status_code == 200  # the schema of /docs builds
        preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
        answer = client.options("/v1/completions", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers  # no CORS by default
    with TestClient(create_app(ServerState(), cors_origin="https://example.com")) as client:
        answer = client.options("/v1/completions", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://example.com"
        other = client.options("/v1/completions", headers={**preflight, "Origin": "https://x.org"})
        assert "access-control-allow-origin" not in other.headers


def test_answer_fields_are_read_from_the_answer_lines() -> None:
    answer = "요약:\n- 회사: 뷁카오\n- 급여: 연봉 3,000만원\n\n연락처(공공정보):\n- TEL: 02-1\n"
    assert answer_fields(answer + "- EMAIL: a@b.kr\n\n지원 방법: 이메일") == {
        "company": "뷁카오", "salary": "연봉 3,000만원",
        "contacts": {"TEL": "02-1", "EMAIL": "a@b.kr"},
    }  # fmt: skip
    assert answer_fields("아무 항목도 없는 답") == {}
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


# --- completions -------------------------------------------------------------------------------


def test_a_streamed_completion_joins_to_the_whole_one(server: Server) -> None:
    whole = greedy(server)
    text = whole["choices"][0]["text"]
    assert text == EXAMPLE.removeprefix(PROMPT).removesuffix("[/ANSWER]")  # it stops there
    assert whole["choices"][0]["finish_reason"] == "stop"
    body = {"prompt": PROMPT, "max_tokens": 300, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(pieces) > 10 and all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    assert any("뷁" in p for p in pieces)  # three byte tokens, one whole character
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)


def test_sampling_settings(server: Server) -> None:
    cut = greedy(server, stop=["뷁카오"])["choices"][0]
    assert cut["text"] == " 정보를 요약해줘.\n[/QUESTION]\n\n[DOC]\n=== ["
    assert cut["finish_reason"] == "stop"
    short = greedy(server, max_tokens=5)
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 5
    sampled = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "max_tokens": 20, "n": 2}
    first = greedy(server, seed=7, **sampled)
    assert [c["index"] for c in first["choices"]] == [0, 1]
    assert first["choices"] == greedy(server, seed=7, **sampled)["choices"]  # the seed repeats
    assert first["usage"]["completion_tokens"] == 40
    assert first["choices"][0]["text"] != first["choices"][1]["text"]  # seed + 1 for sample 2


def test_logprobs_and_a_list_of_prompts(server: Server) -> None:
    reply = greedy(server, prompt=[PROMPT, "[QUESTION]\n이 구인 정보를"], max_tokens=4, logprobs=2)
    assert len(reply["choices"]) == 2
    for choice in reply["choices"]:
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 4
        assert all(len(top) == 2 for top in lp["top_logprobs"])
        assert all(p <= 0 for p in lp["token_logprobs"])


def test_the_openai_client_completions(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    text = greedy(server)["choices"][0]["text"]
    reply = client.completions.create(model="jobgpt", prompt=PROMPT, max_tokens=300, temperature=0)
    assert reply.choices[0].text == text and reply.usage.completion_tokens > 0
    stream = client.completions.create(
        model="jobgpt", prompt=PROMPT, max_tokens=300, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream) == text


# --- chat: the question-answer mode ------------------------------------------------------------


def test_the_openai_client_chat(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    messages = [{"role": "user", "content": DOC}, {"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(
        model="jobgpt", messages=messages, temperature=0, max_tokens=200
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content.strip() == ANSWER
    assert choice.model_extra["answer_fields"] == {
        "company": "뷁카오", "location": "서울 강남구", "contacts": {"TEL": "02-123-4567"}
    }  # fmt: skip
    # the posting as the `posting` extension field, streamed
    stream = client.chat.completions.create(
        model="jobgpt",
        messages=[{"role": "system", "content": "무시됨"}, {"role": "user", "content": QUESTION}],
        extra_body={"posting": DOC},
        temperature=0,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == choice.message.content
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_chat_logprobs(server: Server) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "posting": DOC,
            "temperature": 0, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}  # fmt: skip
    choice = post(server, "/v1/chat/completions", body).json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == 3 and all(len(t["top_logprobs"]) == 2 for t in content)
    assert all(isinstance(t["bytes"], list) for t in content)


def test_a_long_posting_is_cut_to_fit_the_context(server: Server) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "posting": DOC * 40,
            "max_tokens": 5}  # fmt: skip
    reply = post(server, "/v1/chat/completions", body)
    assert reply.status_code == 200 and reply.json()["usage"]["prompt_tokens"] <= 374


# --- bad input: each a 4xx in OpenAI's error shape, never a 500, never the server's insides ----

CHAT_Q = [{"role": "user", "content": QUESTION}]
LONG_Q = "긴 질문 " * 200
# fmt: off
BAD = [
    # (route, raw body, status, param)
    ("/v1/completions", "{not json", 400, None),
    ("/v1/completions", "[1, 2]", 422, None),
    ("/v1/completions", "", 422, None),
    ("/v1/completions", '{"prompt": 5}', 422, "prompt"),
    ("/v1/completions", '{"prompt": [1, 2]}', 422, "prompt"),
    ("/v1/completions", '{"temperature": "0.5"}', 422, "temperature"),
    ("/v1/completions", '{"temperature": NaN}', 422, "temperature"),
    ("/v1/completions", '{"max_tokens": 1e999}', 422, "max_tokens"),
    ("/v1/completions", '{"max_tokens": true}', 422, "max_tokens"),
    ("/v1/completions", '{"stream": "yes"}', 422, "stream"),
    ("/v1/completions", '{"temperature": -0.1}', 400, "temperature"),
    ("/v1/completions", '{"temperature": 2.5}', 400, "temperature"),
    ("/v1/completions", '{"top_p": 0}', 400, "top_p"),
    ("/v1/completions", '{"top_k": -1}', 400, "top_k"),
    ("/v1/completions", '{"repetition_penalty": 0.5}', 400, "repetition_penalty"),
    ("/v1/completions", '{"max_tokens": 0}', 400, "max_tokens"),
    ("/v1/completions", json.dumps({"max_tokens": MAX_TOKENS + 1}), 400, "max_tokens"),
    ("/v1/completions", json.dumps({"n": MAX_N + 1}), 400, "n"),
    ("/v1/completions", json.dumps({"stop": ["a"] * (MAX_STOP + 1)}), 400, "stop"),
    ("/v1/completions", json.dumps({"stop": "x" * 65}), 400, "stop"),
    ("/v1/completions", '{"stop": [""]}', 400, "stop"),
    ("/v1/completions", '{"seed": -1}', 400, "seed"),
    ("/v1/completions", '{"seed": 99999999999999999999999}', 400, "seed"),
    ("/v1/completions", '{"logprobs": 6}', 400, "logprobs"),
    ("/v1/completions", '{"prompt": []}', 400, "prompt"),
    ("/v1/completions", json.dumps({"prompt": ["a"] * 9}), 400, "prompt"),
    ("/v1/completions", json.dumps({"prompt": "채용 " * 400}), 400, "prompt"),
    ("/v1/completions", '{"echo": true}', 400, "echo"),
    ("/v1/completions", '{"logit_bias": {"1": 5}}', 400, "logit_bias"),
    ("/v1/completions", '{"presence_penalty": 1}', 400, "presence_penalty"),
    ("/v1/chat/completions", "{}", 422, "messages"),
    ("/v1/chat/completions", '{"messages": []}', 400, "messages"),
    ("/v1/chat/completions", '{"messages": [{"role": "bot", "content": "x"}]}', 422,
     "messages.0.role"),
    ("/v1/chat/completions", '{"messages": [{"content": "x"}]}', 422, "messages.0.role"),
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q}), 400, "messages"),  # no posting
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q, "posting": " "}), 400, "posting"),
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q, "posting": "a", "document": "b"}),
     400, "posting"),
    ("/v1/chat/completions", json.dumps({"messages": [*CHAT_Q, {"role": "assistant",
     "content": "x"}], "posting": "a"}), 400, "messages"),
    ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": LONG_Q}],
     "posting": DOC}), 400, "messages"),
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q, "posting": DOC,
     "max_completion_tokens": 0}), 400, "max_completion_tokens"),
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q, "posting": DOC, "logprobs": True,
     "top_logprobs": 9}), 400, "top_logprobs"),
    ("/v1/chat/completions", json.dumps({"messages": CHAT_Q, "posting": DOC,
     "tools": [{"type": "function"}]}), 400, "tools"),
    ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": [
     {"type": "image_url", "image_url": {"url": "x"}}]}]}), 422, "messages.0.content"),
    ("/tokenize", '{"prompt": null}', 422, "prompt"),
    ("/detokenize", '{"tokens": [1, 100000]}', 400, "tokens"),
    ("/detokenize", '{"tokens": ["a"]}', 422, "tokens.0"),
]
# fmt: on


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "/work", "/tmp", "site-packages", "jobgpt/", ".py"):
        assert leak not in text, f"{leak!r} in {text}"


@pytest.mark.parametrize(("route", "body", "status", "param"), BAD)
def test_bad_input_is_a_precise_4xx(
    server: Server, route: str, body: str, status: int, param: str | None
) -> None:
    response = httpx.post(
        server.url + route, content=body.encode(), timeout=30,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert len(error["message"]) > 10
    assert_no_internals(response.text)


def test_a_body_over_the_limit_is_413(server: Server) -> None:
    big = b'{"prompt": "' + b"a" * MAX_BODY_BYTES + b'"}'
    declared = httpx.post(server.url + "/v1/completions", content=big, timeout=30)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it arrives
        for _ in range(40):
            yield b"a" * 65536

    chunked = httpx.post(server.url + "/v1/completions", content=chunks(), timeout=30)
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods(server: Server) -> None:
    assert httpx.get(server.url + "/v2/nothing").status_code == 404
    wrong = httpx.get(server.url + "/v1/completions")
    assert wrong.status_code == 405 and set(wrong.json()["error"]) >= {"message", "type"}


def test_metrics(server: Server) -> None:
    greedy(server, max_tokens=3)
    text = httpx.get(server.url + "/metrics").text
    assert 'jobgpt_requests_total{route="/v1/completions",status="200"}' in text
    assert 'jobgpt_requests_total{route="/v1/completions",status="422"}' in text
    assert re.search(r"^jobgpt_generated_tokens_total [1-9]", text, re.M)
    assert re.search(r"^jobgpt_time_to_first_token_seconds_count [1-9]", text, re.M)
    assert re.search(r"^jobgpt_time_per_output_token_seconds_count [1-9]", text, re.M)
    assert "jobgpt_queue_depth 0.0" in text and "jobgpt_active_requests 0.0" in text
    assert 'route="other"' not in text or "/v2" not in text  # no label per unknown path


# --- the API key, disconnects, time limit, load (the runaway model) ----------------------------


def test_a_public_address_needs_an_api_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOBGPT_API_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "jobgpt", "serve", "--host", "0.0.0.0",
         "--checkpoint", str(tmp_path / "none.pt"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: --host 0.0.0.0") and "--api-key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobgpt", "serve", "--checkpoint", str(tmp_path / "none.pt"),
         "--port", str(free_port()), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_api_key_is_checked_on_api_routes(keyed: Server) -> None:
    body = {"prompt": "서울", "max_tokens": 2}
    missing = post(keyed, "/v1/completions", body)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    wrong = post(keyed, "/v1/completions", body, headers={"Authorization": "Bearer s3cres"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(keyed.url + "/v1/models").status_code == 401
    assert post(keyed, "/tokenize", {"prompt": "x"}).status_code == 401
    assert post(keyed, "/v1/completions", body, headers=AUTH).status_code == 200
    assert httpx.get(keyed.url + "/health").json()["auth"] is True  # open: the page asks it
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key="s3cret")
    assert client.completions.create(model="jobgpt", prompt="서울", max_tokens=2).choices


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_frees_its_slot(keyed: Server, stream: bool) -> None:
    body = {"prompt": "서울", "max_tokens": MAX_TOKENS, "stream": stream}
    start = time.monotonic()
    if stream:
        with httpx.stream("POST", keyed.url + "/v1/completions", json=body, headers=AUTH) as r:
            assert r.status_code == 200
            events = sse_events(r)  # kept: dropping it would close the response already
            next(events)  # text is flowing
            assert keyed.health()["active"] == 1
    else:  # no reply is read: the client gives up after a moment
        with pytest.raises(httpx.ReadTimeout):
            post(keyed, "/v1/completions", body, headers=AUTH, timeout=0.5)
    # freed at once, well before the server's time limit would have ended it
    assert wait_idle(keyed, limit_s=TIMEOUT_S / 2)
    assert time.monotonic() - start < TIMEOUT_S
    metrics = httpx.get(keyed.url + "/metrics").text
    assert re.search(r"^jobgpt_client_disconnects_total [1-9]", metrics, re.M)


def test_the_time_limit_ends_a_long_request(limited: Server) -> None:
    body = {"prompt": "서울", "max_tokens": MAX_TOKENS}
    reply = post(limited, "/v1/completions", body)
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "timeout"
    body["stream"] = True
    with httpx.stream("POST", limited.url + "/v1/completions", json=body, timeout=30) as streamed:
        events = list(sse_events(streamed))
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
    assert wait_idle(limited, limit_s=2)


def load_round(server: Server, n_requests: int = 64, clients: int = 16) -> list[int]:
    """n_requests over `clients` threads, every fourth streamed; the statuses."""
    statuses: list[int] = []
    todo = list(range(n_requests))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                body = {"prompt": "서울", "max_tokens": 8, "stream": i % 4 == 0}
                response = http.post("/v1/completions", json=body)
                if response.status_code == 503:
                    assert response.headers["retry-after"].isdigit()
                if body["stream"] and response.status_code == 200:
                    assert response.text.endswith("data: [DONE]\n\n")
                with lock:
                    statuses.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a load round took over two minutes"
    return statuses


def test_under_load_it_answers_or_says_busy_and_does_not_grow(keyed: Server) -> None:
    first = load_round(keyed)
    rss_after_first = keyed.rss_kb()
    second = load_round(keyed)
    rss_after_second = keyed.rss_kb()
    for statuses in (first, second):
        assert len(statuses) == 64 and set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 8
    assert wait_idle(keyed, limit_s=5) and keyed.health()["status"] == "ok"
    # the first round warms up allocators and caches; the second must not add much
    assert rss_after_second < rss_after_first * 1.25 + 30_000, (rss_after_first, rss_after_second)
