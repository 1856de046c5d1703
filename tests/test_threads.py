"""The decoding thread policy: timed with a fake clock, so no test depends on this machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from jobgpt.threads import ThreadPolicy


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(policy: ThreadPolicy, clock: FakeClock, steps: int, step_s: Callable[[int, int], float],
        rows: int | Callable[[], int] = 1) -> list[int]:  # fmt: skip
    """Run `steps` steps; `step_s(threads, rows)` is a step's time. The counts each step ran."""
    used = []
    for _ in range(steps):
        n = rows() if callable(rows) else rows
        policy.before_step()
        used.append(torch.get_num_threads())
        clock.now += step_s(torch.get_num_threads(), n)
        policy.after_step(n)
    return used


def one_is_faster(threads: int, rows: int) -> float:
    return 0.001 * rows * (1 if threads == 1 else 3)


def more_is_faster(threads: int, rows: int) -> float:
    return 0.001 * rows / threads


def test_settles_on_one_thread_where_one_is_faster() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=4, recheck_every=100, clock=clock)
    used = run(policy, clock, 30, one_is_faster)
    assert used[:8] == [2] * 4 + [1] * 4  # the probe: 4 steps at 2, then 4 at 1
    assert set(used[8:]) == {1} and policy.threads == 1
    assert policy.describe() == "1 thread (measured: 3 ms/token at 2, 1 at 1)"


def test_stays_at_n_where_n_is_faster() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=4, probe_steps=3, recheck_every=100, clock=clock)
    used = run(policy, clock, 30, more_is_faster)
    assert used[:6] == [4] * 3 + [3] * 3  # 3 is slower than 4: no need to try 2
    assert set(used[6:]) == {4} and policy.threads == 4
    assert policy.describe().startswith("4 threads (measured: 0.25 ms/token at 4, 0.333 at 3")


def test_goes_down_while_fewer_threads_are_faster() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=4, probe_steps=2, recheck_every=100, clock=clock)
    used = run(policy, clock, 12, lambda threads, rows: abs(threads - 2) + 1.0)
    assert used == [4, 4, 3, 3, 2, 2, 1, 1] + [2] * 4


def test_rechecks_and_follows_a_machine_that_changes() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=4, recheck_every=20, clock=clock)
    used = run(policy, clock, 8 + 20, more_is_faster)  # quiet: 2 threads win
    assert set(used[8:]) == {2}
    used = run(policy, clock, 8 + 20, one_is_faster)  # a busy neighbour: the re-check finds 1
    assert used[:8] == [2] * 4 + [1] * 4 and set(used[8:]) == {1}
    used = run(policy, clock, 8 + 5, more_is_faster)  # quiet again: back to 2
    assert used[:8] == [2] * 4 + [1] * 4 and set(used[8:]) == {2}


def test_a_slowdown_is_probed_at_once_not_at_the_next_recheck() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=4, recheck_every=100, clock=clock)
    run(policy, clock, 20, more_is_faster)  # quiet: settled at 2
    used = run(policy, clock, 20, one_is_faster)  # a busy neighbour arrives
    assert used[:12] == [2] * 4 + [2] * 4 + [1] * 4  # 4 slow steps, then the probe
    assert set(used[12:]) == {1}


def test_time_is_compared_per_token_not_per_step() -> None:
    """2 threads decode 8 rows in twice the time 1 thread takes for one row: 2 is faster."""
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=4, recheck_every=100, clock=clock)
    run(policy, clock, 8, lambda threads, rows: 0.002 if threads == 2 else 0.001,
        rows=lambda: 8 if torch.get_num_threads() == 2 else 1)  # fmt: skip
    assert policy.threads == 2
    assert policy.measured == pytest.approx({2: 0.00025, 1: 0.001})


def test_one_slow_step_does_not_decide() -> None:
    """A prefill step now and then: the median of a probe's steps counts."""
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=4, recheck_every=100, clock=clock)
    slow = iter([0.05] + [0.001] * 3 + [0.002] * 4)
    run(policy, clock, 8, lambda threads, rows: next(slow))
    assert policy.threads == 2


def test_pinned_never_changes() -> None:
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, pinned=1, probe_steps=1, recheck_every=1, clock=clock)
    assert set(run(policy, clock, 20, more_is_faster)) == {1}
    assert policy.describe() == "1 thread (pinned by --threads)"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_does_nothing_on_a_gpu(device: str) -> None:
    torch.set_num_threads(2)
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=1, clock=clock, device=device)
    assert set(run(policy, clock, 10, one_is_faster)) == {2}
    assert not policy.measured and "GPU" in policy.describe()


def test_the_engine_reports_its_threads() -> None:
    from test_generate import CORPUS, tiny_model

    from jobgpt.engine import Engine, SamplingParams
    from jobgpt.generator import TextGenerator
    from jobgpt.tokenizer import train_tokenizer

    tok = train_tokenizer(CORPUS, vocab_size=300, min_frequency=1)
    gen = TextGenerator(tiny_model(tok).eval(), tok)
    engine = Engine(gen, threads=ThreadPolicy(pinned=1))
    engine.start()
    try:
        events = list(engine.submit("hello", SamplingParams(max_tokens=5)).events(timeout=60))
    finally:
        engine.stop()
    assert events[-1].finish_reason == "length"
    assert engine.stats()["threads"] == 1
    assert Engine(gen).stats()["threads"] is None  # no policy: torch's threads, as they are
