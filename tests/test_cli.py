"""The command line: flags from the configs, errors in the house format, scripts that say
their own name."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from jobgpt.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def help_of(stage: str) -> str:
    sub = build_parser()._subparsers._group_actions[0].choices[stage]  # type: ignore[union-attr]
    return " ".join(sub.format_help().split())


def test_train_help_shows_what_each_preset_sets() -> None:
    text = help_of("train")
    assert "(default: 16; preset tiny: 8, demo: 8)" in text  # --batch-size
    assert "(default: 384; preset tiny: 64, demo: 256)" in text  # --n-embd, a nested setting


def test_a_value_starting_with_a_dash_gets_a_hint(capsys) -> None:
    try:
        main(["generate", "--prompt", "-개발자"])
    except SystemExit as exit:
        assert exit.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --prompt: expected one argument")
    assert "--prompt=-value" in err and "Traceback" not in err


def test_a_reference_script_names_itself_in_usage_and_errors() -> None:
    script = REPO / "scripts" / "train_gpt.py"
    usage = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert usage.startswith("usage: uv run python scripts/train_gpt.py")
    bad = subprocess.run(
        [sys.executable, str(script), "--lr", "fast"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: argument --lr: invalid float value: 'fast'\n"
        "  fix: see `uv run python scripts/train_gpt.py --help` for every flag\n"
    )


def test_main_gives_back_the_callers_sigterm_handler(capsys) -> None:
    def mine(signum, frame) -> None:  # a program that embeds jobgpt has its own
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["generate", "--temperature", "-1"]) == 1
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)
