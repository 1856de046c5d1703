"""Progress: a bar on a terminal, plain periodic lines elsewhere (logs without carriage returns)."""

from __future__ import annotations

import io
import logging

import pytest

from jobgpt.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_logs_plain_lines_at_most_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream, clock = io.StringIO(), FakeClock()
    with caplog.at_level(logging.INFO, logger="jobgpt"):
        with Progress("encoding", stream=stream, every_s=10, clock=clock) as progress:
            for _ in range(30):  # 30 updates of 1 MB, one second apart
                clock.now += 1
                progress.update(1_000_000)
    lines = [r.getMessage() for r in caplog.records if r.name == "jobgpt.progress"]
    assert lines == [
        "encoding: 10.0 MB so far (1.0 MB/s)",
        "encoding: 20.0 MB so far (1.0 MB/s)",
        "encoding: 30.0 MB so far (1.0 MB/s)",
    ]
    assert stream.getvalue() == ""  # no bar, so no carriage returns in a captured log


def test_a_short_stage_off_a_terminal_prints_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jobgpt"):
        with Progress("reading corpus", stream=io.StringIO(), clock=FakeClock()) as progress:
            progress.update(123)
    assert progress.count == 123 and not caplog.records


def test_on_a_terminal_it_draws_a_bar() -> None:
    stream = Terminal()
    with Progress("encoding", stream=stream) as progress:
        progress.update(2048)
    assert "encoding" in stream.getvalue() and "\r" in stream.getvalue()
