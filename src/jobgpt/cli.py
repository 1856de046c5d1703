"""`jobgpt <stage> [flags]`: one subcommand per pipeline stage.

Flags are generated from each stage's config dataclass (`jobgpt.config`, via the stage table in
`jobgpt.stages`), so a default lives in exactly one place. Stage modules are imported only when
their subcommand runs, which keeps `jobgpt --help` instant (no torch import).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import types
from dataclasses import fields, is_dataclass
from typing import Any, NoReturn, Union, get_args, get_origin, get_type_hints

from tqdm.contrib.logging import logging_redirect_tqdm

from jobgpt.commands import command
from jobgpt.errors import JobGPTError
from jobgpt.files import os_error
from jobgpt.stages import STAGES, nest, run_stage


class _Parser(argparse.ArgumentParser):
    """argparse with the house error format: the problem and the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        fix = f"see `{self.prog} --help` for every flag"
        if "expected one argument" in message:
            # argparse reads a value that starts with "-" as the next flag
            flag = message.split()[1].rstrip(":")
            fix = f"attach a value that starts with '-' with '=': {flag}=-value; or {fix}"
        self.exit(2, f"error: {message}\n  fix: {fix}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobgpt",
        description="Train a Korean job-posting GPT from scratch on your own text, and use it.",
    )
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for name, stage in STAGES.items():
        stage_parser = sub.add_parser(name, help=stage.help, description=stage.help)
        add_flags(stage_parser, stage.config, stage.presets or {})
    return parser


def build_script_parser(stage: str) -> argparse.ArgumentParser:
    """The parser of one stage run as its reference script (`uv run python
    scripts/train_gpt.py`), so that its usage and errors name the command the user typed."""
    parser = _Parser(prog=command(stage), description=STAGES[stage].help)
    add_flags(parser, STAGES[stage].config, STAGES[stage].presets or {})
    return parser


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    presets: dict[str, dict[str, Any]],
    prefix: str = "",
) -> None:
    """One `--flag` per dataclass field; nested dataclasses (the model) are flattened. The help
    shows the default and what each preset sets instead."""
    hints = get_type_hints(cls)
    defaults = cls()
    for f in fields(cls):
        tp = hints[f.name]
        if f.metadata.get("cli") is False:
            continue
        if is_dataclass(tp):
            inner = {name: values.get(f.name, {}) for name, values in presets.items()}
            add_flags(parser, tp, inner, prefix=f"{prefix}{f.name}.")
            continue
        default = getattr(defaults, f.name)
        by_preset = [f"{name}: {v[f.name]!r}" for name, v in presets.items() if f.name in v]
        shown = f"default: {default!r}" + (f"; preset {', '.join(by_preset)}" if by_preset else "")
        kwargs: dict[str, Any] = {
            "dest": prefix + f.name,
            "default": argparse.SUPPRESS,  # only flags the user typed reach make_config
            "help": f"{f.metadata.get('help', '')} ({shown})",
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


def main(argv: list[str] | None = None, as_script: bool = False) -> int:
    """`jobgpt <stage> [flags]`. `as_script`: run by the stage's reference script, whose
    command then appears in the usage line and in errors."""
    argv = sys.argv[1:] if argv is None else argv
    if as_script:
        args = build_script_parser(argv[0]).parse_args(argv[1:])
        args.stage = argv[0]
    else:
        args = build_parser().parse_args(argv)
    values = nest({k: v for k, v in vars(args).items() if k != "stage"})
    log = _log_to_stderr()
    # SIGTERM (kill, a job runner's stop) becomes an exception, so clean-up code runs and the
    # exit status says the run was stopped; training handles it itself to save first. The old
    # handler comes back afterwards: a program that calls main() keeps its own.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        # Log lines go through tqdm.write, so they never garble an active progress bar.
        with logging_redirect_tqdm(loggers=[log]):
            run_stage(args.stage, values)
    except JobGPTError as err:
        return _fail(err)
    except BrokenPipeError:
        # The reader went away (`jobgpt generate | head`): stop quietly, as Unix tools do.
        # Python would report the pipe again when it flushes stdout at exit, so point it at
        # /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as err:  # a disk that is full or read-only, a path of the wrong kind...
        return _fail(os_error(err))
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
    except SystemExit as stop:  # SIGTERM: clean-up ran (training saved first)
        print("stopped.", file=sys.stderr)
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _fail(err: JobGPTError) -> int:
    hint = f"\n  fix: {err.hint}" if err.hint else ""
    print(f"error: {err.message}{hint}", file=sys.stderr)
    return 1


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
