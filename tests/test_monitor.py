"""The run's judge, on synthetic curves: overfitting, stalls (and which way to move the LR), the
plan's small-data warnings, the final verdict, the pace (on a clock the tests move), and the
metrics/plot files."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobgpt.metrics import MetricsLog, Pace, plot_losses
from jobgpt.monitor import (
    diagnose,
    format_duration,
    format_record,
    paired_noise,
    plan_report,
    summarize,
)


def curve(train: list[float], val: list[float], every: int = 100) -> list[dict]:
    return [
        {"step": every * (i + 1), "train_loss": t, "val_loss": v}
        for i, (t, v) in enumerate(zip(train, val, strict=True))
    ]


def test_healthy_run_has_no_diagnosis() -> None:
    history = curve([5.0, 4.0, 3.5, 3.2, 3.0, 2.9], [5.1, 4.2, 3.7, 3.4, 3.2, 3.1])
    assert diagnose(history, patience=3, lr=3e-4) is None


def test_noisy_but_improving_val_is_not_overfitting() -> None:
    # val wobbles up once but sets a new best inside the window: still learning.
    history = curve([5.0, 4.5, 4.2, 4.0, 3.8], [5.0, 4.6, 4.7, 4.3, 4.4])
    assert diagnose(history, patience=3, lr=3e-4) is None


def test_val_rising_while_train_falls_is_overfitting() -> None:
    history = curve([4.0, 3.0, 2.5, 2.0, 1.6, 1.2], [4.1, 3.3, 3.1, 3.2, 3.4, 3.7])
    found = diagnose(history, patience=3, lr=3e-4)
    assert found is not None and found.kind == "overfitting"
    assert "overfitting" in found.message and "과적합" in found.message
    assert "best.pt keeps step 300 (val 3.1000)" in found.message


def test_overfitting_needs_patience_evals_of_evidence() -> None:
    history = curve([4.0, 3.0, 2.5, 2.0], [4.1, 3.3, 3.1, 3.2])  # one rise only
    assert diagnose(history, patience=3, lr=3e-4) is None
    assert diagnose(history, patience=1, lr=3e-4).kind == "overfitting"


def test_a_rise_within_the_noise_of_the_val_windows_is_not_overfitting() -> None:
    """The fault hunt's case: val rose 0.0016 over the patience window, train fell: noise."""
    history = curve([4.0, 3.9, 3.85, 3.8, 3.78], [4.10, 4.0990, 4.0995, 4.1000, 4.1006])
    then = [4.1 + d for d in (0.02, -0.03, 0.01, 0.0)]  # per-window val losses, 3 evals ago
    now = [4.1 + d for d in (0.03, -0.02, -0.01, 0.01)]
    history[-1]["val_noise"] = paired_noise(then, now)
    assert diagnose(history, patience=3, lr=3e-4) is None
    history[-1]["val_loss"] = 4.25  # a rise far past the noise
    assert diagnose(history, patience=3, lr=3e-4).kind == "overfitting"


def test_paired_noise_is_the_standard_error_of_the_per_window_change() -> None:
    assert paired_noise([1.0, 2.0, 3.0], [1.1, 2.1, 3.1]) == pytest.approx(0.0, abs=1e-12)
    assert paired_noise([1.0, 1.0], [1.0, 2.0]) == pytest.approx(0.5)  # stdev 0.707 / sqrt 2


def test_overfitting_advice_does_not_suggest_what_the_run_already_does() -> None:
    history = curve([4.0, 3.0, 2.5, 2.0, 1.6, 1.2], [4.1, 3.3, 3.1, 3.2, 3.4, 3.7])
    assert "--early-stop" in diagnose(history, patience=3, lr=3e-4).message
    assert "--early-stop" not in diagnose(history, patience=3, lr=3e-4, early_stop=True).message


def test_bouncing_stall_suggests_a_lower_learning_rate() -> None:
    history = curve([3.0, 2.5, 2.8, 2.6, 2.9], [3.1, 2.7, 2.9, 2.8, 3.0])
    found = diagnose(history, patience=3, lr=3e-4)
    assert found is not None and found.kind == "stalled"
    assert "too high" in found.message and "--lr 1.0e-04" in found.message
    assert "학습 정체" in found.message


def test_flat_stall_suggests_a_higher_learning_rate() -> None:
    history = curve([3.0, 2.9, 2.9, 2.9, 2.9], [3.1, 3.0, 3.0, 3.0, 3.0])
    found = diagnose(history, patience=3, lr=3e-4)
    assert found is not None and found.kind == "stalled"
    assert "too low" in found.message and "--lr 9.0e-04" in found.message
    with_muon = diagnose(history, patience=3, lr=3e-3, muon_lr=0.02)  # both rates move
    assert with_muon is not None and "--lr 9.0e-03 --muon-lr 6.0e-02" in with_muon.message


def test_plan_warns_about_many_epochs_and_few_val_windows() -> None:
    facts, warnings = plan_report(
        params=10_000_000,
        tokens_per_step=4096,
        max_steps=2000,
        train_tokens=40_000,
        val_tokens=1_000,
        block_size=256,
    )
    text = " ".join(facts)
    assert "8,192,000 tokens = 204.8 epochs" in text
    assert "0.00 train tokens per parameter" in text
    assert "3 val windows" in text
    assert any("과적합" in w and "205 epochs" in w for w in warnings)
    assert any("noisy" in w and "3 windows" in w for w in warnings)


def test_with_a_time_budget_the_plan_calls_its_steps_a_ceiling() -> None:
    """`--max-minutes 15 --max-steps 100000` is how a laptop run is budgeted: its 280 epochs are
    what the steps would read, not what 15 minutes will."""
    plan = {"params": 10**7, "tokens_per_step": 4096, "max_steps": 100_000}
    data = {"train_tokens": 1_460_778, "val_tokens": 79_719, "block_size": 256}
    facts, warnings = plan_report(**plan, **data, max_minutes=15)
    assert "280.4 epochs (at most: the 15-minute budget may end the run first)" in " ".join(facts)
    assert any("(at most: the 15-minute budget" in w and "과적합" in w for w in warnings)
    facts, warnings = plan_report(**plan, **data)
    assert "at most" not in " ".join(facts + warnings)


def test_plan_with_ample_data_has_no_warnings() -> None:
    _, warnings = plan_report(
        params=1_000_000,
        tokens_per_step=4096,
        max_steps=1000,
        train_tokens=20_000_000,
        val_tokens=500_000,
        block_size=256,
    )
    assert warnings == []


def test_summary_says_what_the_numbers_mean() -> None:
    overfit = summarize(curve([3.0, 2.0, 1.0], [3.1, 2.5, 2.9]))
    assert "best val loss 2.5000 at step 200" in overfit and "best.pt" in overfit
    learning = summarize(curve([3.0, 2.0, 1.5], [3.1, 2.1, 1.55]))
    assert "still learning" in learning
    assert summarize([]).startswith("no evaluation")


def test_summary_says_plainly_when_the_model_is_still_untrained() -> None:
    """QA: lr 1e-7 left val at 9.707 = ln(16,156), yet the verdict said "still learning"."""
    history = curve(
        [9.7090, 9.7085, 9.7082, 9.7080, 9.7079], [9.7075, 9.7073, 9.7072, 9.7071, 9.7070]
    )
    found = diagnose(history, patience=3, lr=1e-7)
    assert found is not None and found.kind == "stalled"
    verdict = summarize(history, vocab_size=16_156, lr=1e-7, diagnosis=found)
    assert "barely learned anything" in verdict and "ln(vocab 16,156) = 9.6900" in verdict
    assert "still learning" not in verdict
    assert "training stalled" in verdict and "--lr" in verdict and "more steps" in verdict
    assert "\n" not in verdict
    # Not stalled (still creeping down): the same plain words, with a decade higher LR.
    creeping = curve([9.70, 9.60, 9.50], [9.70, 9.60, 9.50])
    verdict = summarize(creeping, vocab_size=16_156, lr=1e-7, more_steps_command="CMD")
    assert "barely learned anything" in verdict and "try 1.0e-06" in verdict and "`CMD`" in verdict
    # Well below ln(vocab): a real verdict.
    assert "barely" not in summarize(curve([3.0, 2.0], [3.1, 2.1]), vocab_size=16_156, lr=3e-4)


def test_summary_agrees_with_a_stall_at_the_end() -> None:
    history = curve([3.0, 2.5, 2.5, 2.5, 2.5], [3.1, 2.6, 2.6, 2.6, 2.6])
    found = diagnose(history, patience=3, lr=3e-4)
    verdict = summarize(history, vocab_size=400, lr=3e-4, diagnosis=found)
    assert "stalled" in verdict and "--lr 9.0e-04" in verdict
    assert "still learning" not in verdict


def test_summary_gives_the_command_to_run_next() -> None:
    overfit = summarize(
        curve([3.0, 2.0, 1.0], [3.1, 2.5, 2.9]), best_command="uv run python scripts/generate.py"
    )
    assert "use best.pt: `uv run python scripts/generate.py`" in overfit
    learning = summarize(curve([3.0, 2.0, 1.5], [3.1, 2.1, 1.55]), more_steps_command="MORE")
    assert "still learning" in learning and learning.endswith("`MORE`")


def test_one_val_window_is_singular() -> None:
    facts, warnings = plan_report(
        params=1000,
        tokens_per_step=64,
        max_steps=1,
        train_tokens=10_000,
        val_tokens=40,
        block_size=32,
    )
    assert "(1 val window of 32 tokens)" in facts[0]
    assert any("only 1 window:" in w for w in warnings)


def test_durations_are_short_and_fixed_format() -> None:
    assert [format_duration(s) for s in (5, 90, 4000)] == ["5s", "1m30s", "1h06m"]
    assert format_duration(float("inf")) == "?"


def test_log_lines_have_a_fixed_format() -> None:
    rec = {
        "kind": "eval",
        "step": 200,
        "train_loss": 2.3456,
        "val_loss": 2.4567,
        "val_ppl": 11.666,
        "val_bpb": 1.2345,
        "lr": 3e-4,
        "tokens_per_s": 12345.6,
        "elapsed_s": 83,
        "eta_s": 605,
    }
    assert format_record(rec, 2000) == (
        "step  200/2000 | eval | train 2.3456 | val 2.4567 (ppl 11.67, 1.234 bits/byte) | "
        "lr 3.00e-04 | 12,346 tok/s | 1m23s elapsed, ETA 10m05s"
    )


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pace_measures_from_the_second_step_and_leaves_evals_out_of_throughput() -> None:
    clock = FakeClock()
    pace = Pace(clock)
    pace.start(step=0, tokens=0, end_step=10)
    clock.now += 5.0  # the first step: allocation, kernel choice... slow
    pace.stepped(1)
    clock.now += 1.0  # a steady step
    pace.stepped(2)  # only the first step marks where steady steps begin
    timing = pace.record(step=2, tokens=200)
    assert timing["eta_s"] == pytest.approx(8 * 1.0)  # 8 steps to go at the steady 1 s each
    assert timing["tokens_per_s"] == pytest.approx(200 / 6.0)
    assert timing["elapsed_s"] == pytest.approx(6.0)
    clock.now += 30.0  # an eval and a checkpoint
    pace.restart(tokens=200)
    clock.now += 2.0
    assert pace.record(step=4, tokens=400)["tokens_per_s"] == pytest.approx(200 / 2.0)


def test_pace_with_one_step_done_counts_it_as_it_was() -> None:
    clock = FakeClock()
    pace = Pace(clock)
    pace.start(step=0, tokens=0, end_step=4)
    clock.now += 3.0
    pace.stepped(1)
    assert pace.record(step=1, tokens=10)["eta_s"] == pytest.approx(3 * 3.0)


def test_the_time_budget_caps_the_eta_and_ends_the_session() -> None:
    clock = FakeClock()
    pace = Pace(clock)
    pace.start(step=0, tokens=0, end_step=1000, budget_s=60.0)
    clock.now += 1.0
    pace.stepped(1)
    clock.now += 1.0
    assert pace.record(step=2, tokens=0)["eta_s"] == pytest.approx(58.0)  # not 998 s
    assert not pace.over_budget()
    assert pace.clock_progress() == pytest.approx(2 / 60)  # the schedule's progress by the clock
    clock.now += 58.0
    assert pace.over_budget() and pace.record(step=60, tokens=0)["eta_s"] == 0.0
    clock.now += 5.0
    assert pace.clock_progress() == 1.0 and Pace(clock).clock_progress() == 0.0  # capped; none


def test_a_resumed_session_spreads_the_progress_left_over_its_budget() -> None:
    clock = FakeClock()
    pace = Pace(clock)
    pace.progress_before = 0.6  # where the checkpoint's session got to
    assert pace.clock_progress() == 0.6  # between sessions
    pace.start(step=0, tokens=0, end_step=1000, budget_s=100.0)
    clock.now += 50.0
    assert pace.clock_progress() == pytest.approx(0.8)  # half the budget: half the rest
    clock.now += 50.0
    assert pace.clock_progress() == pytest.approx(1.0)
    pace.start(step=0, tokens=0, end_step=1000)  # a session without a budget stays put
    assert pace.clock_progress() == 0.6


def test_elapsed_time_adds_up_over_sessions_and_stops_between_them() -> None:
    clock = FakeClock()
    pace = Pace(clock)
    pace.elapsed_before = 100.0  # from the checkpoint
    assert pace.elapsed_s() == 100.0 and not pace.over_budget()  # no session yet
    pace.start(step=5, tokens=0, end_step=10, budget_s=0.0)  # 0: no budget
    clock.now += 20.0
    assert pace.elapsed_s() == pytest.approx(120.0) and not pace.over_budget()
    pace.finish()
    clock.now += 500.0  # idle between sessions: not training time
    assert pace.elapsed_s() == pytest.approx(120.0)
    pace.start(step=10, tokens=0, end_step=20)
    clock.now += 5.0
    assert pace.record(step=10, tokens=0)["elapsed_s"] == pytest.approx(125.0)


def test_metrics_log_appends_and_drops_records_past_a_resumed_step(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.reset()
    for step in (10, 20, 30):
        log.append({"kind": "step", "step": step, "loss": 1.0})
    log.reset(keep_through_step=20)  # resuming from a checkpoint at step 20
    assert [r["step"] for r in log.read()] == [10, 20]
    log.reset()  # a new run
    assert log.read() == []


def test_loss_plot_is_a_png_written_atomically(tmp_path: Path) -> None:
    recs = [{"kind": "step", "step": s, "loss": 5 - s / 100} for s in range(10, 300, 10)]
    recs += [
        {"kind": "eval", "step": s, "train_loss": 5 - s / 100, "val_loss": 5.1 - s / 120}
        for s in (100, 200, 300)
    ]
    path = tmp_path / "loss.png"
    path.write_bytes(b"old")
    plot_losses(recs, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]  # no temp file left behind


def test_a_line_cut_short_in_metrics_jsonl_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "step", "step": 1, "loss": 3.0}\n{"kind": "eval", "st')  # disk full
    assert MetricsLog(path).read() == [{"kind": "step", "step": 1, "loss": 3.0}]


def test_the_verdict_does_not_call_noise_overfitting() -> None:
    history = curve([4.0, 3.9, 3.8], [4.10, 4.00, 4.004])
    history[-1]["val_noise"] = 0.01  # the last val is 0.004 above its best: within 2 x 0.01
    assert "overfit" not in summarize(history)
    history[-1]["val_noise"] = 0.0001
    assert "overfit after step 200" in summarize(history)
