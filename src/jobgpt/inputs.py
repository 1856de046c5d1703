"""Finding the input files: which paths a stage that reads a corpus reads.

`resolve_inputs` turns files, directories and globs into a sorted, de-duplicated file list. A
directory or glob skips jobgpt's own outputs found there (tokenizer.json, meta.json, token bins,
checkpoints, metrics: see `pipeline_output`), so ``--input data`` still works once data/ holds
them; a directory also skips files with unsupported extensions (.docx, .hwp, .pdf...), and the
log says so. Reading documents out of the files is `jobgpt.corpus`'s job; the suffix sets here
are shared with it, so "supported" means the same thing in both places.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jobgpt.commands import command
from jobgpt.errors import InputError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".text"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
JSON_SUFFIXES = frozenset({".json"})
CSV_SUFFIXES = frozenset({".csv"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES | JSON_SUFFIXES | CSV_SUFFIXES

# The fix for any input in a format we do not read (also used by the reader's errors).
FORMATS_HINT = "use UTF-8 text (.txt, .md), .jsonl, .json or .csv files"

# What the pipeline writes beside a corpus: token bins (dataset), checkpoints and the loss plot
# (train), besides tokenizer.json, meta.json and metrics.jsonl, which are recognised by content.
_OUTPUT_SUFFIXES = {".bin": "token bins", ".pt": "checkpoint"}
_OUTPUT_NAMES = {"loss.png": "loss plot"}
# Our JSON outputs are small (a 100k-token tokenizer.json is ~5 MB); a larger file is a corpus
# and is not parsed twice. A marker must appear near the start: both files begin with it.
_MAX_OUTPUT_JSON_BYTES = 64 << 20
_OUTPUT_JSON_MARKERS = (b'"added_tokens"', b'"format_version"')
_META_KEYS = frozenset({"format_version", "dtype", "vocab_size", "eot_id", "tokenizer", "splits"})

_CONVERT_HINT = "convert them to .txt/.jsonl/.csv"
_MAX_NAMED = 5  # paths a "skipped ..." line names before "(+k more)"


def resolve_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files, directories (searched recursively) and globs -> one ordered, de-duplicated list.

    Order is the order of ``patterns``; within a directory or glob, sorted by path, so the same
    inputs always give the same corpus. Hidden files and directories (``.git``…) are skipped in
    directories, silently, and only supported extensions are taken from them (the files left
    out are logged, so a .docx or .hwp dropped in is not lost unnoticed). A directory or glob
    also skips jobgpt's own outputs (see `pipeline_output`), so ``--input data`` still works
    once data/ holds tokenizer.json and the bins. A file named on its own is never skipped (our
    tokenizer.json or meta.json named so is refused, with a message saying what it is).
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [os.fspath(patterns)]
    if not patterns:
        raise InputError("no input given", "pass --input with corpus files, directories or globs")
    seen: set[Path] = set()
    files: list[Path] = []
    skipped = _Skipped([], [])
    for pattern in patterns:
        for path in _expand(str(pattern), skipped):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                files.append(path)
    skipped.log()
    return files


@dataclass
class _Skipped:
    """What a directory or glob left out, for the log: both lists hold printable paths."""

    outputs: list[str]  # "path (what it is)" for each jobgpt output
    unsupported: list[str]  # files in a directory whose extension is not a corpus format

    def mark(self) -> tuple[int, int]:
        return len(self.outputs), len(self.unsupported)

    def since(self, mark: tuple[int, int]) -> _Skipped:
        return _Skipped(self.outputs[mark[0] :], self.unsupported[mark[1] :])

    def describe(self) -> str:
        """What was skipped, for an error message ("jobgpt outputs: …"); '' if nothing."""
        parts = []
        if self.outputs:
            parts.append(f"jobgpt outputs: {_named(self.outputs)}")
        if self.unsupported:
            parts.append(f"files with unsupported extensions: {_named(self.unsupported)}")
        return "; ".join(parts)

    def log(self) -> None:
        """One line per kind of skipped file; hidden files are never mentioned. A file reached
        twice (a directory and a glob over it) is reported once."""
        outputs, unsupported = (
            list(dict.fromkeys(self.outputs)),
            list(dict.fromkeys(self.unsupported)),
        )
        if outputs:
            logger.info(
                "skipped %d jobgpt output file(s) in the inputs: %s",
                len(outputs),
                _named(outputs),
            )
        if unsupported:
            logger.info(
                "skipped %d file(s) with unsupported extensions: %s — %s%s",
                len(unsupported),
                _named(unsupported),
                _CONVERT_HINT,
                _hwp_tip(unsupported),
            )


def _named(paths: list[str]) -> str:
    """The first few paths, and how many more there are: a log line stays one readable line."""
    more = len(paths) - _MAX_NAMED
    return ", ".join(paths[:_MAX_NAMED]) + (f" (+{more} more)" if more > 0 else "")


def _hwp_tip(paths: list[str]) -> str:
    # Korean users' postings are often Hangul (.hwp/.hwpx) files; Hangul can save them as text.
    if any(p.lower().endswith((".hwp", ".hwpx")) for p in paths):
        return " (.hwp: 한글에서 '다른 이름으로 저장' → 텍스트 문서(.txt))"
    return ""


# --- one pattern: a file, a directory or a glob


def _expand(pattern: str, skipped: _Skipped) -> list[Path]:
    """The files one ``--input`` pattern names; what it skips is noted in ``skipped``."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return _expand_file(pattern, path)
    if path.is_dir():
        return _expand_dir(pattern, path, skipped)
    if path.exists():
        raise InputError(f"{pattern} is not a regular file or directory", FORMATS_HINT)
    if any(char in pattern for char in "*?["):
        return _expand_glob(pattern, skipped)
    raise InputError(
        f"{pattern}: no such file or directory",
        f"check the path (relative paths start from {Path.cwd()}); "
        f"`{command('demo-data', '--out', 'data/samples.txt')}` writes a demo corpus there",
    )


def _expand_file(pattern: str, path: Path) -> list[Path]:
    """A file named explicitly is never skipped; our JSON outputs named so are refused as such."""
    kind = _json_output(path) if path.suffix.lower() in JSON_SUFFIXES else None
    if kind is not None:
        raise InputError(
            f"{pattern} is a jobgpt output ({kind}), not corpus text",
            "leave it out of --input (a directory or glob given to --input skips such files "
            "by itself)",
        )
    return [path]


def _expand_dir(pattern: str, path: Path, skipped: _Skipped) -> list[Path]:
    before = skipped.mark()
    files = _walk(path, skipped)
    if not files:
        # Say what the directory did hold, so an all-.hwp folder gets the conversion hint.
        found = skipped.since(before)
        only = f" (only {found.describe()})" if found.describe() else ""
        convert = f"{_CONVERT_HINT}{_hwp_tip(found.unsupported)} or " if found.unsupported else ""
        raise InputError(
            f"directory {pattern} holds no corpus files{only}",
            f"{convert}put files in it; {FORMATS_HINT}",
        )
    return files


def _expand_glob(pattern: str, skipped: _Skipped) -> list[Path]:
    before = skipped.mark()
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [
        f
        for m in map(Path, matches)
        # A file the glob names is taken whatever its extension: the user chose it.
        for f in (_walk(m, skipped) if m.is_dir() else _without_outputs([m], skipped))
    ]
    if not files:
        found = skipped.since(before).describe()
        raise InputError(
            f"no file matches {pattern!r}" + (f" except {found}" if found else ""),
            "check the pattern (quote it so your shell does not expand it, and use "
            "'**' for subdirectories), or pass files or a directory",
        )
    return files


def _walk(directory: Path, skipped: _Skipped) -> list[Path]:
    """The corpus files under `directory`, sorted by path.

    Hidden files and directories (.git, .DS_Store) are left out silently; jobgpt outputs and
    files with unsupported extensions (.docx, .hwp, .pdf...) are left out and noted in
    `skipped`, so the user learns why a file they dropped in was not read.
    """
    files = sorted(
        (
            p
            for p in directory.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        ),
        key=lambda p: p.relative_to(directory).as_posix(),
    )
    corpus = []
    for path in _without_outputs(files, skipped):
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            corpus.append(path)
        else:
            skipped.unsupported.append(str(path))
    return corpus


# --- jobgpt's own outputs


def _without_outputs(files: list[Path], skipped: _Skipped) -> list[Path]:
    """`files` less jobgpt's own outputs, which are noted in `skipped`."""
    kept = []
    for path in files:
        kind = pipeline_output(path)
        if kind is None:
            kept.append(path)
        else:
            skipped.outputs.append(f"{path} ({kind})")
    return kept


def pipeline_output(path: Path) -> str | None:
    """What jobgpt output `path` is ("tokenizer", "token bins"...), or None if it is not one.

    Binary outputs go by name; JSON by content, so a user's own meta.json of postings is still
    read: a tokenizer.json has the HuggingFace keys "model" and "added_tokens", our meta.json
    the keys the dataset stage writes, and metrics.jsonl holds training step/eval records.
    """
    suffix = path.suffix.lower()
    kind = _OUTPUT_SUFFIXES.get(suffix) or _OUTPUT_NAMES.get(path.name)
    if kind is not None:
        return kind
    if suffix in JSON_SUFFIXES:
        return _json_output(path)
    if path.name == "metrics.jsonl":
        return _metrics_output(path)
    return None


def _json_output(path: Path) -> str | None:
    if path.stat().st_size > _MAX_OUTPUT_JSON_BYTES:
        return None
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if not any(marker in head for marker in _OUTPUT_JSON_MARKERS):
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return None  # not ours; reading it gives the clear error
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("model"), dict) and isinstance(data.get("added_tokens"), list):
        return "tokenizer"
    if _META_KEYS <= data.keys():
        return "dataset meta"
    return None


def _metrics_output(path: Path) -> str | None:
    with path.open("rb") as f:
        first = f.readline()
    if not first:  # `jobgpt train` starts it empty
        return "training metrics"
    try:
        record = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return None
    is_ours = isinstance(record, dict) and record.get("kind") in ("step", "eval")
    return "training metrics" if is_ours and "step" in record else None


__all__ = [
    "CSV_SUFFIXES",
    "FORMATS_HINT",
    "JSONL_SUFFIXES",
    "JSON_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TEXT_SUFFIXES",
    "pipeline_output",
    "resolve_inputs",
]
