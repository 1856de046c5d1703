"""What `jobgpt serve` accepts: the request bodies, their limits, and OpenAI's error shape.

Types are checked by pydantic in strict mode (``"0.5"`` is not a number, ``true`` is not 1,
NaN and Infinity are refused), which FastAPI turns into 422; values outside a named limit are
refused here with a 400 that names the parameter. Every refusal is an `APIError`, rendered as
OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

The context policy. The model sees at most `block_size` tokens (learned positions). A prompt
must leave room for ``min(max_tokens, block_size // 8)`` new tokens inside that window, as
`jobgpt generate` does for a question-answer prompt; longer generations then slide the window
(see `jobgpt.sampling`). A longer prompt is refused (400, code ``context_length_exceeded``)
rather than cropped from the left without a word. The chat route instead fits a long posting to
the context itself (`TextGenerator.qa_prompt` cuts its middle), so only a too-long question
is refused there.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from jobgpt.checks import MAX_NEW_TOKENS
from jobgpt.engine import SamplingParams

# --- named limits (each violation is a 400 naming the parameter; the body limit a 413) ----------
MAX_BODY_BYTES = 1 << 20  # a posting is a few KB; 1 MB leaves room for any honest request
MAX_TOKENS = MAX_NEW_TOKENS  # the same bound as `jobgpt generate --max-new-tokens`
MAX_N = 4  # samples per prompt: each one takes a decoding slot
MAX_PROMPTS = 8  # prompts in one completions request (a list prompt)
MAX_STOP = 4  # stop strings, as OpenAI allows
MAX_STOP_CHARS = 64
MAX_LOGPROBS = 5  # alternatives per token, as OpenAI's completions allow
MAX_MESSAGES = 64
MAX_TEMPERATURE = 2.0  # OpenAI's range is 0..2
MAX_REPETITION_PENALTY = 2.0  # above ~1.5 text is already garbled
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes


class APIError(Exception):
    """A refusal with an HTTP status, rendered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind, self.headers = kind, headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _limit(ok: bool, param: str, message: str, code: str | None = None) -> None:
    if not ok:
        raise APIError(400, message, param=param, code=code)


# --- request bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    # strict: no "0.5" -> 0.5 or true -> 1; unknown fields (a client's "user", "metadata") are
    # ignored, as most OpenAI-compatible servers do; features that would change the answer and
    # are not implemented are refused by `refuse_unsupported`.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


class StreamOptions(_Body):
    include_usage: bool | None = None


class _Sampling(_Body):
    """The sampling fields both routes share; None means "the server's default"."""

    model: str | None = None  # one model is served, whatever this says
    max_tokens: int | None = None
    temperature: float | None = None  # 0 = greedy
    top_p: float | None = None
    top_k: int | None = None  # extension (vLLM's name)
    repetition_penalty: float | None = None  # extension (vLLM's name)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Refused when set (see `refuse_unsupported`): accepted here so the refusal can name them.
    logit_bias: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    best_of: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = ""  # "" = the start of a new document (OpenAI: <|endoftext|>)
    logprobs: int | None = None  # top-k alternatives per token
    echo: bool | None = None
    suffix: str | None = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None  # newer clients' name for max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Extension: the posting to answer about. Without it, the posting is the user message
    # before the last one (the last one is the question). `document` is an alias.
    posting: str | None = None
    document: str | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None


class TokenizeRequest(_Body):
    model: str | None = None
    prompt: str
    add_special_tokens: bool = True  # prepend <|endoftext|>, as every prompt is encoded


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[int]


# --- from a request to the engine's parameters ---------------------------------------------------


def refuse_unsupported(body: _Sampling) -> None:
    """OpenAI features this server does not implement, refused rather than silently ignored."""
    unsupported = {
        "logit_bias": bool(body.logit_bias),
        "presence_penalty": bool(body.presence_penalty),
        "frequency_penalty": bool(body.frequency_penalty),
        "best_of": body.best_of not in (None, 1, body.n),
        "echo": bool(getattr(body, "echo", None)),
        "suffix": bool(getattr(body, "suffix", None)),
        "tools": bool(getattr(body, "tools", None) or getattr(body, "functions", None)),
        "response_format": (getattr(body, "response_format", None) or {}).get("type", "text")
        != "text",
    }
    for param, used in unsupported.items():
        hint = " (use repetition_penalty)" if param.endswith("_penalty") else ""
        _limit(not used, param, f"`{param}` is not supported by this server{hint}")


def sampling_params(
    body: _Sampling, max_tokens: int | None, logprobs: int, max_param: str = "max_tokens"
) -> SamplingParams:
    """SamplingParams from the request; fields left out keep the engine's defaults. Each value
    outside its limit is a 400 that names it (temperature 0 is greedy, never "the default")."""
    _limit(
        max_tokens is None or 1 <= max_tokens <= MAX_TOKENS,
        max_param,
        f"{max_param} must be between 1 and {MAX_TOKENS}, got {max_tokens}",
    )
    t, p, k, rp = body.temperature, body.top_p, body.top_k, body.repetition_penalty
    _limit(
        t is None or 0 <= t <= MAX_TEMPERATURE,
        "temperature",
        f"temperature must be between 0 (greedy) and {MAX_TEMPERATURE}, got {t}",
    )
    _limit(p is None or 0 < p <= 1, "top_p", f"top_p must be in (0, 1], got {p}")
    _limit(k is None or k >= 0, "top_k", f"top_k must be 0 (off) or positive, got {k}")
    _limit(
        rp is None or 1 <= rp <= MAX_REPETITION_PENALTY,
        "repetition_penalty",
        f"repetition_penalty must be between 1 (off) and {MAX_REPETITION_PENALTY}, got {rp}",
    )
    _limit(
        body.seed is None or 0 <= body.seed <= MAX_SEED,
        "seed",
        f"seed must be between 0 and {MAX_SEED}, got {body.seed}",
    )
    stop = stop_strings(body.stop)
    given = {"max_tokens": max_tokens, "temperature": t, "top_p": p, "top_k": k,
             "repetition_penalty": rp, "seed": body.seed}  # fmt: skip
    values = {name: value for name, value in given.items() if value is not None}
    return SamplingParams(**values, stop=stop, logprobs=logprobs)


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    _limit(len(stops) <= MAX_STOP, "stop", f"at most {MAX_STOP} stop strings, got {len(stops)}")
    for s in stops:
        _limit(bool(s), "stop", "stop strings must not be empty")
        _limit(
            len(s) <= MAX_STOP_CHARS,
            "stop",
            f"a stop string may have at most {MAX_STOP_CHARS} characters, got {len(s)}",
        )
    return tuple(stops)


def sample_count(n: int | None) -> int:
    _limit(n is None or 1 <= n <= MAX_N, "n", f"n must be between 1 and {MAX_N}, got {n}")
    return n or 1


def logprob_count(k: int | None, param: str) -> int:
    _limit(
        k is None or 0 <= k <= MAX_LOGPROBS,
        param,
        f"{param} must be between 0 and {MAX_LOGPROBS}, got {k}",
    )
    return k or 0


def prompt_list(prompt: str | list[str]) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else prompt
    _limit(bool(prompts), "prompt", "prompt is an empty list: send a string or a list of strings")
    _limit(
        len(prompts) <= MAX_PROMPTS,
        "prompt",
        f"at most {MAX_PROMPTS} prompts in one request, got {len(prompts)}",
    )
    return prompts


def context_budget(block_size: int, max_tokens: int) -> int:
    """The most prompt tokens the context policy (module docstring) allows."""
    return block_size - min(max_tokens, block_size // 8)


def check_context(n_tokens: int, block_size: int, max_tokens: int, param: str) -> None:
    budget = context_budget(block_size, max_tokens)
    _limit(
        n_tokens <= budget,
        param,
        f"the prompt is {n_tokens} tokens, but this model's context is {block_size} tokens "
        f"and a prompt may take at most {budget} of them (the rest is room for the answer)",
        code="context_length_exceeded",
    )


def message_text(message: ChatMessage) -> str:
    if isinstance(message.content, list):
        return "".join(part.text for part in message.content)
    return message.content or ""


def question_and_posting(body: ChatRequest) -> tuple[str, str]:
    """The chat messages as the question-answer format: the last message, from the user, is
    the question; the posting is `posting`/`document`, else the user message before it.
    System and assistant messages are not shown to the model (it answers one question)."""
    messages = body.messages
    _limit(bool(messages), "messages", "messages is empty: send at least the question")
    _limit(
        len(messages) <= MAX_MESSAGES,
        "messages",
        f"at most {MAX_MESSAGES} messages, got {len(messages)}",
    )
    _limit(
        messages[-1].role == "user",
        "messages",
        f"the last message must be the user's question, not a {messages[-1].role!r} message",
    )
    _limit(
        body.posting is None or body.document is None,
        "posting",
        "send the posting as `posting` or as `document`, not both",
    )
    question = message_text(messages[-1]).strip()
    _limit(bool(question), "messages", "the question (the last user message) is empty")
    posting = body.posting if body.posting is not None else body.document
    if posting is None:
        earlier = [m for m in messages[:-1] if m.role == "user"]
        _limit(
            bool(earlier),
            "messages",
            "no posting to answer about: send it as a user message before the question, or "
            "in the `posting` field (공고를 앞선 user 메시지나 posting 필드로 보내 주세요)",
        )
        posting = message_text(earlier[-1])
    _limit(bool(posting.strip()), "posting", "the posting is empty")
    return question, posting


# --- the answer's fields (an extension of the chat response) ------------------------------------

SUMMARY_LABELS = {"회사": "company", "포지션": "position", "위치": "location",
                  "고용형태": "employment", "급여": "salary", "마감일": "deadline"}  # fmt: skip
_FIELD_LINE = re.compile(r"^(?:-\s*)?([^:\s][^:]{0,15}?)\s*:\s*(\S.*?)\s*$")


def answer_fields(answer: str) -> dict[str, Any]:
    """The summary fields of an answer (``- 회사: …`` lines, under English keys) and its contact
    block (``연락처(공공정보):`` then ``- TEL: …`` lines) as ``contacts``; only what it states."""
    fields: dict[str, Any] = {}
    contacts: dict[str, str] = {}
    in_contacts = False
    for line in answer.splitlines():
        text = line.strip()
        if text.startswith("연락처") and text.endswith(":"):
            in_contacts = True
            continue
        match = _FIELD_LINE.match(text)
        if not match:
            in_contacts = False  # a blank line or prose ends the contact block
            continue
        label, value = match.groups()
        if in_contacts:
            contacts.setdefault(label, value)
        elif label in SUMMARY_LABELS:
            fields.setdefault(SUMMARY_LABELS[label], value)
    if contacts:
        fields["contacts"] = contacts
    return fields
