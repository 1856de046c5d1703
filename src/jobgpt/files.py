"""Atomic writes and fingerprints: the one place the pipeline writes a file.

Every output (tokenizer.json, the bins' meta.json, checkpoints, metrics, the loss plot, the demo
corpus) is written to a hidden temp file beside its destination and renamed over it, so a reader
sees the old file or the new one, never half of one, even when the writer is killed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_path(path: Path) -> Path:
    """A hidden, process-specific temp name beside ``path`` (same filesystem: rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file in `path`'s directory; on success rename it over `path`.

    Text modes write UTF-8 with newlines kept as given. The file gets the usual permissions
    (umask), like every other output of the pipeline (mkstemp would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **text) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a successful replace there is nothing left to remove


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
