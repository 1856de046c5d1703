"""The decoding thread policy: timed with a fake clock, so no test depends on this machine."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import torch

from jobgpt import threads
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


def test_training_settings_skip_the_first_step_and_decide_in_two() -> None:
    """The first training step (allocations, compilation) is slow whatever the count: untimed."""
    clock = FakeClock()
    policy = ThreadPolicy.for_training(max_threads=2, clock=clock)
    assert (policy.probe_steps, policy.recheck_every) == (2, 50)
    first = iter([10.0])  # a first step at 2 threads ten times slower than 1 thread's steps
    used = run(policy, clock, 10, lambda t, rows: next(first, one_is_faster(t, rows)))
    assert used[:5] == [2, 2, 2, 1, 1] and set(used[5:]) == {1} and not policy.probing
    assert policy.measured == pytest.approx({2: 0.003, 1: 0.001})

    clock, policy = FakeClock(), ThreadPolicy.for_training(max_threads=2, clock=clock)
    first = iter([10.0])
    run(policy, clock, 10, lambda t, rows: next(first, more_is_faster(t, rows)))
    assert policy.threads == 2  # the slow first step did not count against 2 threads


def test_training_rechecks_every_50_steps() -> None:
    clock = FakeClock()
    policy = ThreadPolicy.for_training(max_threads=2, clock=clock)
    used = run(policy, clock, 1 + 4 + 50 + 4, one_is_faster)
    assert used[5:55] == [1] * 50 and used[55:59] == [2, 2, 1, 1]


def test_pinned_and_measured_from_the_flag() -> None:
    """--threads 0 measures, --threads N pins (for training and decoding alike)."""
    for make in (ThreadPolicy.for_training, ThreadPolicy.for_decoding):
        assert make(0).pinned is None and make(None).pinned is None
        assert make(3).pinned == 3 and make(3).threads == 3
    assert ThreadPolicy.for_decoding(0).probe_steps == ThreadPolicy().probe_steps
    assert ThreadPolicy.for_training(max_threads=2).probing  # until its first probe has chosen
    assert not ThreadPolicy.for_training(1).probing  # pinned: nothing to measure
    assert not ThreadPolicy.for_training(device="cuda").probing
    assert "training steps" in ThreadPolicy.for_training(max_threads=2).describe()


def test_logs_one_line_when_the_choice_is_new(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    policy = ThreadPolicy.for_training(max_threads=2, clock=clock)
    with caplog.at_level(logging.INFO, logger="jobgpt.threads"):
        run(policy, clock, 1 + 4 + 60, one_is_faster)  # settles on 1; re-check: 1 again
        first = [r.getMessage() for r in caplog.records]
        run(policy, clock, 60, more_is_faster)  # quiet again: the re-check moves to 2
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert first == ["training threads: 1 thread (measured: 3 ms/token at 2, 1 at 1)"]
    assert lines[1:] == ["training threads: 2 threads (measured: 0.5 ms/token at 2, 1 at 1), was 1"]


def test_a_quiet_policy_logs_its_choice_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Under streamed text (`jobgpt generate`) the choice is told in the final summary only."""
    clock = FakeClock()
    policy = ThreadPolicy(max_threads=2, probe_steps=2, clock=clock, log_level=logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="jobgpt.threads"):
        run(policy, clock, 10, one_is_faster)
    assert policy.settled == 1 and caplog.records
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_a_later_policy_may_use_the_threads_torch_had_before_any_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Training settled on 1 thread must not cap the generation after it (`jobgpt demo`) at 1."""
    monkeypatch.setattr(threads, "_threads_before_policies", None)
    torch.set_num_threads(2)
    clock = FakeClock()
    training = ThreadPolicy.for_training(max_threads=2, clock=clock)
    run(training, clock, 10, one_is_faster)
    assert training.threads == 1 and torch.get_num_threads() == 1
    assert ThreadPolicy.for_decoding().max_threads == 2


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
