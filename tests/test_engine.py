"""The continuous-batching engine: each request's text is what `TextGenerator` gives it alone.

Real threads and tiny fp32 models; nothing here depends on timing. Prompts have different
lengths, and the 32-token context makes long requests slide their window mid-batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from test_generate import ANSWER, CORPUS, DOC, EXAMPLE, QUESTION, always_predict, tiny_model
from tokenizers import Tokenizer

from jobgpt.engine import Engine, Event, Handle, QueueFull, SamplingParams
from jobgpt.errors import ConfigError
from jobgpt.generator import Prompt, TextGenerator
from jobgpt.qa import ANSWER_END, EOT, build_qa_prompt
from jobgpt.tokenizer import train_tokenizer

PROMPTS = ["회사명:", "", "=== [네이버] 프론트엔드 개발자", "hello", "자격 요건: 파이썬 3년\n우대"]
MAX_TOKENS = [40, 12, 25, 33, 7]  # past the 32-token window for some; retiring at other steps


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=300, min_frequency=1)


def fit(model, windows: list[list[int]], steps: int) -> TextGenerator:
    model.train()
    x, y = torch.tensor([w[:-1] for w in windows]), torch.tensor([w[1:] for w in windows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def gen(tok: Tokenizer) -> TextGenerator:
    """A 32-token model that half-recites the corpus: varied text, not one token repeated (as a
    random model's greedy output is), so a wrong position or a leaked key changes the text."""
    eot = tok.token_to_id(EOT)
    stream = [i for doc in CORPUS for i in (eot, *tok.encode(doc).ids)]
    windows = [stream[s : s + 33] for s in range(0, len(stream) - 33, 3)]
    return TextGenerator(fit(tiny_model(tok), windows, steps=100), tok)


@pytest.fixture(scope="module")
def trained(tok: Tokenizer) -> TextGenerator:
    """A model that has memorised EXAMPLE (as in test_generate), for Korean answers."""
    ids = [tok.token_to_id(EOT), *tok.encode(EXAMPLE).ids, tok.token_to_id(EOT)]
    return TextGenerator(fit(tiny_model(tok, block_size=len(ids)), [ids], steps=150), tok)


@contextmanager
def running(gen: TextGenerator, **kwargs) -> Iterator[Engine]:
    engine = Engine(gen, **kwargs)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


def greedy(max_tokens: int, **kwargs) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0, **kwargs)


def collect(handle: Handle) -> tuple[str, str, list[Event]]:
    events = list(handle.events(timeout=60))
    return "".join(e.text for e in events), events[-1].finish_reason, events


def expected(gen: TextGenerator, prompt: str, max_tokens: int, **kwargs) -> tuple:
    (done,) = gen.generate(prompt, temperature=0, max_new_tokens=max_tokens, **kwargs)
    return done.text, done.finish_reason, done.n_tokens


def result(handle: Handle) -> tuple:
    text, reason, events = collect(handle)
    return text, reason, events[-1].completion_tokens


# --- greedy: the same text alone, together, or admitted mid-way -------------------------------


def test_each_request_alone_gives_the_generator_text(gen: TextGenerator) -> None:
    with running(gen) as engine:
        for prompt, n in zip(PROMPTS, MAX_TOKENS, strict=True):
            assert result(engine.submit(prompt, greedy(n))) == expected(gen, prompt, n)


def test_requests_submitted_together_share_every_step(gen: TextGenerator) -> None:
    engine = Engine(gen, max_batch=8)
    handles = [engine.submit(p, greedy(n)) for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
    assert engine.stats()["queued"] == len(PROMPTS)
    engine.start()  # all admitted at the first step
    try:
        for handle, prompt, n in zip(handles, PROMPTS, MAX_TOKENS, strict=True):
            assert result(handle) == expected(gen, prompt, n)
        stats = engine.stats()
    finally:
        engine.stop()
    done = [expected(gen, p, n)[2] for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
    assert stats["tokens_generated"] == sum(done)
    assert stats["steps"] == max(done)  # one step gave every running request its token
    assert (stats["active"], stats["queued"], stats["max_batch"]) == (0, 0, 8)


def wait_for_steps(engine: Engine, steps: int) -> None:
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while engine.stats()["steps"] < steps:
        assert time.monotonic() < deadline, "the engine stopped stepping"
        time.sleep(0.001)


@pytest.mark.parametrize("max_batch", [8, 2])  # 2: later requests wait for a row to free up
def test_requests_admitted_while_others_generate(gen: TextGenerator, max_batch: int) -> None:
    want = [expected(gen, p, n) for p, n in zip(PROMPTS, MAX_TOKENS, strict=True)]
    gate = threading.Semaphore(0)  # one forward pass per release: the test sets the pace

    def one_pass_at_a_time(module, args) -> None:
        gate.acquire()

    hook = gen.model.register_forward_pre_hook(one_pass_at_a_time)
    try:
        with running(gen, max_batch=max_batch) as engine:
            first = engine.submit(PROMPTS[0], greedy(MAX_TOKENS[0]))
            gate.release(10)  # its prefill and 9 decoding steps; then it waits inside step 11
            wait_for_steps(engine, 10)
            pairs = zip(PROMPTS[1:], MAX_TOKENS[1:], strict=True)
            others = [engine.submit(p, greedy(n)) for p, n in pairs]
            hook.remove()
            gate.release()  # the rest at full speed: the others join at step 12
            got = [result(h) for h in [first, *others]]
            stats = engine.stats()
    finally:
        hook.remove()
    assert got == want
    assert stats["steps"] < stats["tokens_generated"]  # steps were shared


def test_a_prompt_longer_than_the_context_keeps_its_end(gen: TextGenerator) -> None:
    prompt = "hello world " * 30
    with running(gen) as engine:
        alone = engine.submit(prompt, greedy(20))
        assert result(alone) == expected(gen, prompt, 20)


# --- seeds, stops, lengths ------------------------------------------------------------------------


def test_a_seed_gives_the_same_text_whatever_shares_the_batch(gen: TextGenerator) -> None:
    kwargs = {"temperature": 1.0, "top_k": 40, "top_p": 0.9, "repetition_penalty": 1.3}
    params = SamplingParams(max_tokens=30, seed=7, **kwargs)
    with running(gen) as engine:
        alone = collect(engine.submit("회사명:", params))[0]
        crowd = [engine.submit(p, SamplingParams(max_tokens=20, temperature=1.0)) for p in PROMPTS]
        seeded = engine.submit("회사명:", params)
        crowd += [engine.submit(p, greedy(15)) for p in PROMPTS]
        assert collect(seeded)[0] == alone
        other = collect(engine.submit("회사명:", SamplingParams(max_tokens=30, seed=8, **kwargs)))
        for handle in crowd:
            collect(handle)
    # its own generator, seeded as `jobgpt generate --seed` seeds one sample's
    (done,) = gen.generate("회사명:", max_new_tokens=30, seed=7, **kwargs)
    assert alone == done.text
    assert other[0] != alone


def test_a_stop_string_cuts_the_text(gen: TextGenerator) -> None:
    full = expected(gen, "회사명:", 40)[0]
    stop = full[6:9]
    with running(gen) as engine:
        text, reason, _ = collect(engine.submit("회사명:", greedy(40, stop=(stop,))))
    assert (text, reason) == (full[: full.index(stop)], "stop")
    assert (text, reason) == expected(gen, "회사명:", 40, stop=[stop])[:2]


@pytest.mark.parametrize("stop_token", [EOT, ANSWER_END])
def test_stop_ids_end_a_request(gen: TextGenerator, stop_token: str) -> None:
    stop_id = gen.tokenizer.token_to_id(stop_token)
    forced = TextGenerator(always_predict(gen.model, stop_id), gen.tokenizer)
    with running(forced) as engine:
        (event,) = list(engine.submit("", SamplingParams(temperature=1.0)).events(timeout=60))
    assert (event.text, event.finish_reason, event.token_ids) == ("", "stop", [stop_id])
    assert event.completion_tokens == 1


def test_max_tokens_ends_with_length(gen: TextGenerator) -> None:
    with running(gen) as engine:
        text, reason, events = collect(engine.submit("hello", greedy(9)))
    assert reason == "length" and events[-1].completion_tokens == 9
    assert sum(len(e.token_ids) for e in events) == 9


# --- cancelling, queueing, stopping ---------------------------------------------------------------


def chatty(gen: TextGenerator) -> TextGenerator:
    """A generator that never stops by itself."""
    word = gen.tokenizer.encode(" 채용").ids[-1]
    return TextGenerator(always_predict(gen.model, word), gen.tokenizer)


def test_cancel_frees_the_row_for_the_next_request(gen: TextGenerator) -> None:
    with running(chatty(gen), max_batch=1) as engine:
        long = engine.submit("", greedy(10_000))
        stream = long.events(timeout=60)
        next(stream)
        assert engine.stats()["active"] == 1
        waiting = engine.submit("", greedy(3))  # no free row until the long one goes
        long.cancel()
        assert list(stream)[-1].finish_reason == "cancelled"
        assert result(waiting)[1:] == ("length", 3)
        for _ in engine.submit("", greedy(10_000)).events(timeout=60):
            break  # a reader that goes away cancels its request
        assert result(engine.submit("", greedy(2)))[1:] == ("length", 2)
        assert engine.stats()["active"] == 0


def test_a_full_queue_is_refused(gen: TextGenerator) -> None:
    engine = Engine(gen, max_queue=2)  # not started: requests stay queued
    engine.submit("a", greedy(5))
    engine.submit("b", greedy(5))
    with pytest.raises(QueueFull):
        engine.submit("c", greedy(5))
    assert engine.stats()["queued"] == 2


@pytest.mark.parametrize(
    "params, problem",
    [
        (SamplingParams(temperature=-1), "--temperature"),
        (SamplingParams(top_p=0), "--top-p"),
        (SamplingParams(max_tokens=0), "--max-new-tokens"),
        (SamplingParams(stop=("",)), "--stop"),
        (SamplingParams(logprobs=21), "logprobs"),
    ],
)
def test_bad_settings_are_refused(gen: TextGenerator, params: SamplingParams, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        Engine(gen).submit("a", params)


def test_prompt_ids_outside_the_vocabulary_are_refused(gen: TextGenerator) -> None:
    for ids in ([], [0, gen.model.config.vocab_size]):
        with pytest.raises(ConfigError, match="vocabulary"):
            Engine(gen).submit(Prompt(ids), greedy(5))


def test_a_request_past_its_timeout_ends(gen: TextGenerator) -> None:
    with running(gen, timeout=0.0) as engine:
        assert collect(engine.submit("a", greedy(50)))[1] == "timeout"


def test_stop_ends_the_thread_and_cancels_what_runs(gen: TextGenerator) -> None:
    engine = Engine(chatty(gen))
    engine.start()
    thread = engine._thread
    stream = engine.submit("", greedy(10_000)).events(timeout=60)
    next(stream)
    engine.stop()
    assert list(stream)[-1].finish_reason == "cancelled"
    assert thread is not None and not thread.is_alive()


# --- text, log-probabilities, asyncio -------------------------------------------------------------


def test_korean_streams_whole_and_equals_the_generator_text(trained: TextGenerator) -> None:
    prompt = build_qa_prompt(QUESTION, DOC)
    with running(trained) as engine:
        text, reason, events = collect(engine.submit(prompt, greedy(200)))
    assert (text, reason) == (ANSWER + "\n", "stop")
    assert text == expected(trained, prompt, 200)[0]
    assert len(events) > 5 and not any("\ufffd" in e.text for e in events)
    assert sum(len(e.token_ids) for e in events) == events[-1].completion_tokens


def test_logprobs_are_the_model_log_softmax(gen: TextGenerator) -> None:
    prompt = Prompt(gen.encode_prompt("회사명:"))  # not healed: greedy picks the top token
    with running(gen) as engine:
        _, _, events = collect(engine.submit(prompt, greedy(10, logprobs=5)))
    ids = [i for e in events for i in e.token_ids]
    entries = [lp for e in events for lp in e.logprobs]
    assert len(entries) == len(ids) == 10
    with torch.inference_mode():
        logits, _ = gen.model(torch.tensor([prompt.ids + ids]))
    logp = F.log_softmax(logits[0, len(prompt.ids) - 1 : -1], dim=-1)  # (10, V)
    for t, (token_id, entry) in enumerate(zip(ids, entries, strict=True)):
        assert entry["token"] == gen.tokenizer.id_to_token(token_id)
        assert entry["logprob"] == pytest.approx(logp[t, token_id].item(), abs=1e-4)
        assert len(entry["top"]) == 5
        assert max(entry["top"].values()) == pytest.approx(entry["logprob"], abs=1e-6)
        assert entry["token"] in entry["top"]
    assert all(e.logprobs is None for e in collect_plain(gen))


def collect_plain(gen: TextGenerator) -> list[Event]:
    with running(gen) as engine:
        return collect(engine.submit("hello", greedy(5)))[2]


def test_async_events_give_the_same_text(gen: TextGenerator) -> None:
    async def main() -> list[Event]:
        with running(gen) as engine:
            handle = engine.submit(PROMPTS[0], greedy(MAX_TOKENS[0]))
            return [event async for event in handle.aevents()]

    events = asyncio.run(main())
    text = "".join(e.text for e in events)
    assert (text, events[-1].finish_reason) == expected(gen, PROMPTS[0], MAX_TOKENS[0])[:2]
