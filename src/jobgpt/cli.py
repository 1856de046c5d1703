"""`jobgpt <stage> [flags]`: one subcommand per pipeline stage.

Flags are generated from each stage's config dataclass (`jobgpt.config`, via the stage table in
`jobgpt.stages`), so a default lives in exactly one place. Stage modules are imported only when
their subcommand runs, which keeps `jobgpt --help` instant (no torch import).
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
from dataclasses import fields, is_dataclass
from typing import Any, NoReturn, Union, get_args, get_origin, get_type_hints

from tqdm.contrib.logging import logging_redirect_tqdm

from jobgpt.errors import JobGPTError
from jobgpt.stages import STAGES, nest, run_stage


class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: the problem and the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n  fix: see `{self.prog} --help` for every flag\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobgpt",
        description="Train a Korean job-posting GPT from scratch on your own text, and use it.",
    )
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, stage in STAGES.items():
        stage_parser = sub.add_parser(name, help=stage.help, description=stage.help)
        add_flags(stage_parser, stage.config)
    return parser


def add_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One `--flag` per dataclass field; nested dataclasses (the model) are flattened."""
    hints = get_type_hints(cls)
    defaults = cls()
    for f in fields(cls):
        tp = hints[f.name]
        if f.metadata.get("cli") is False:
            continue
        if is_dataclass(tp):
            add_flags(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = {
            "dest": prefix + f.name,
            "default": argparse.SUPPRESS,  # only flags the user typed reach make_config
            "help": f"{f.metadata.get('help', '')} (default: {default!r})",
        }
        base, is_list = _flag_type(tp)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base
            kwargs["metavar"] = f.name.upper()
            if is_list:
                kwargs["nargs"] = "+"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _flag_type(tp: Any) -> tuple[type, bool]:
    """(element type, is_list) for annotations like int, str | None, list[str]."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        (tp,) = [a for a in get_args(tp) if a is not type(None)]
        return _flag_type(tp)
    if origin is list:
        return get_args(tp)[0], True
    return tp, False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    values = nest({k: v for k, v in vars(args).items() if k != "stage"})
    log = _log_to_stderr()
    try:
        # Log lines go through tqdm.write, so they never garble an active progress bar.
        with logging_redirect_tqdm(loggers=[log]):
            run_stage(args.stage, values)
    except JobGPTError as err:
        hint = f"\n  fix: {err.hint}" if err.hint else ""
        print(f"error: {err.message}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
    return 0


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr (which tests and wrappers may swap) at each record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _log_to_stderr() -> logging.Logger:
    """jobgpt's own INFO lines to stderr, as bare messages. Only the `jobgpt` logger: the root
    logger stays at WARNING, so libraries' chatter (matplotlib's "generated new fontManager")
    stays out of the output. Idempotent: `main` may run many times in one process."""
    log = logging.getLogger("jobgpt")
    log.setLevel(logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    return log
