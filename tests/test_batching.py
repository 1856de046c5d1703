"""Document-aligned batches: rows start at documents (or at a row-sized piece of a long one),
documents are placed whole when they fit, and every token of a long document is reachable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobgpt.batching import (
    DocumentWindows,
    copy_drills,
    document_lengths,
    document_starts,
    fit_shares,
    fit_text,
    mix_in_copy_drills,
)
from jobgpt.errors import DataError

EOT = 0


def stream(lengths: list[int], lead_eot: bool = False, dtype: type = np.uint16) -> np.ndarray:
    """Documents of the given lengths, each followed by EOT. Token ids are unique across the
    stream (1, 2, 3, ...), so a token's value tells where in the stream it came from."""
    parts: list[int] = [EOT] if lead_eot else []
    next_id = 1
    for length in lengths:
        parts += list(range(next_id, next_id + length)) + [EOT]
        next_id += length
    return np.array(parts, dtype=dtype)


def segments(row: np.ndarray) -> list[np.ndarray]:
    """A row split before each EOT: one piece per placed document."""
    cuts = np.flatnonzero(row == EOT)
    return np.split(row, cuts[1:])


def check_row_is_placed_documents(row: np.ndarray, tokens: np.ndarray, size: int) -> None:
    """Every segment is a contiguous run of the stream: EOT + a document from its first token,
    or (a row's first segment only) a piece of a long document starting `size` * k tokens after
    the document's EOT."""
    for i, piece in enumerate(segments(row)):
        body = piece[1:] if piece[0] == EOT else piece
        if len(body) == 0:
            continue
        first = int(np.flatnonzero(tokens == body[0])[0])
        if piece[0] == EOT:
            assert first == 0 or tokens[first - 1] == EOT, "a segment starts mid-document"
        else:
            assert i == 0, "only a row's first segment may continue a document"
            doc_start = max(np.flatnonzero(tokens[:first] == EOT), default=-1)
            assert (first - doc_start) % size == 0, "a piece starts off a row boundary"
        assert np.array_equal(tokens[first : first + len(body)], body)


def test_document_starts_point_at_the_eot_before_each_document() -> None:
    tokens = stream([3, 2, 4])  # 1 2 3 E 4 5 E 6 7 8 9 E
    assert document_starts(tokens, EOT).tolist() == [0, 3, 6]
    assert document_starts(stream([3, 2], lead_eot=True), EOT).tolist() == [0, 4]
    assert document_starts(np.array([EOT], np.uint16), EOT).tolist() == []


def test_document_starts_scans_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobgpt.batching as batching

    tokens = stream([3, 5, 1, 7, 2])
    expected = document_starts(tokens, EOT).tolist()
    monkeypatch.setattr(batching, "SCAN_CHUNK", 4)  # EOTs on chunk edges too
    assert document_starts(tokens, EOT).tolist() == expected


def test_document_lengths_and_fit_shares() -> None:
    starts = np.array([0, 3, 6])
    assert document_lengths(starts, 11).tolist() == [3, 3, 5]
    lengths = np.array([100, 257, 258, 500, 513, 1025, 2000, 50])
    # a segment of size + 1 tokens (EOT + size document tokens) fits a size-token context
    assert fit_shares(lengths) == {256: 3 / 8, 512: 6 / 8, 1024: 7 / 8}
    assert fit_shares(np.array([]), (256,)) == {256: 0.0}
    assert fit_text(lengths, 256) == "38% of training documents fit the 256-token context"


def test_rows_start_at_documents_and_y_is_x_shifted() -> None:
    rng = np.random.default_rng(0)
    tokens = stream(rng.integers(1, 40, size=60).tolist())
    windows = DocumentWindows(tokens, EOT, block_size=32)
    x, y = windows.sample(8, np.random.default_rng(1))
    assert x.shape == y.shape == (8, 32)
    assert x.dtype == y.dtype == np.int64
    assert x.flags.c_contiguous and y.flags.c_contiguous
    assert np.array_equal(x[:, 1:], y[:, :-1])
    for xr, yr in zip(x, y, strict=True):
        check_row_is_placed_documents(np.append(xr, yr[-1]), tokens, 33)


def test_documents_that_fit_are_placed_whole() -> None:
    tokens = stream([5, 9, 3, 12, 7, 30, 2, 6] * 5)
    windows = DocumentWindows(tokens, EOT, block_size=24)
    rng = np.random.default_rng(2)
    for row in windows.placements(16, rng):
        assert sum(take for _, take in row) == 25
        for doc, take in row[:-1]:
            assert take == windows.piece_lengths[doc]  # only the last segment may be cropped
        last_doc, last_take = row[-1]
        assert last_take <= windows.piece_lengths[last_doc]


def test_a_long_document_is_trained_on_whole_in_row_sized_pieces() -> None:
    tokens = stream([100, 3])  # EOT + 100 tokens: pieces of 17, 17, 17, 17, 17, 16 (+ the EOT)
    windows = DocumentWindows(tokens, EOT, block_size=16)
    assert windows.piece_lengths.tolist() == [17, 17, 17, 17, 17, 16, 4]
    x, y = windows.sample(64, np.random.default_rng(3))
    seen = set(x.ravel().tolist()) | set(y.ravel().tolist())
    assert set(range(1, 101)) <= seen, "the long document's tail is never trained on"
    for xr, yr in zip(x, y, strict=True):
        check_row_is_placed_documents(np.append(xr, yr[-1]), tokens, 17)


def test_every_document_longer_than_the_block() -> None:
    tokens = stream([50, 60, 70], lead_eot=True)
    windows = DocumentWindows(tokens, EOT, block_size=16)
    x, y = windows.sample(6, np.random.default_rng(4))
    for xr, yr in zip(x, y, strict=True):
        check_row_is_placed_documents(np.append(xr, yr[-1]), tokens, 17)


def test_a_single_document_gets_a_virtual_eot_and_repeats() -> None:
    tokens = stream([5])  # 1 2 3 4 5 E: no EOT before the only document
    windows = DocumentWindows(tokens, EOT, block_size=11)
    assert len(windows) == 1 and windows.lengths.tolist() == [6]
    x, y = windows.sample(2, np.random.default_rng(5))
    assert np.append(x[0], y[0, -1]).tolist() == [EOT, 1, 2, 3, 4, 5] * 2


def test_same_rng_state_same_batch() -> None:
    tokens = stream(np.random.default_rng(6).integers(1, 80, size=200).tolist())
    windows = DocumentWindows(tokens, EOT, block_size=64)
    rng = np.random.default_rng(7)
    rng.integers(0, 10, size=3)
    state = rng.bit_generator.state
    first = windows.sample(4, rng)
    rng.bit_generator.state = state
    second = windows.sample(4, rng)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], windows.sample(4, rng)[0])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_reads_a_memmapped_bin(tmp_path: Path, dtype: type) -> None:
    tokens = stream(np.random.default_rng(8).integers(1, 50, size=100).tolist(), dtype=dtype)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    memmap = np.memmap(path, dtype=dtype, mode="r")
    windows = DocumentWindows(memmap, EOT, block_size=32)
    x, y = windows.sample(4, np.random.default_rng(9))
    assert x.dtype == np.int64 and x.shape == (4, 32)
    for xr, yr in zip(x, y, strict=True):
        check_row_is_placed_documents(np.append(xr, yr[-1]), tokens, 33)


def test_a_stream_without_documents_is_refused() -> None:
    with pytest.raises(DataError, match="no document"):
        DocumentWindows(np.array([EOT], np.uint16), EOT, block_size=8)


def check_copy_drill(x: np.ndarray, y: np.ndarray) -> int:
    """A drill row: the first copy's targets ignored, every later one the token after its twin
    one period back. Returns the period."""
    period = int((y == -1).sum())
    assert (y[:period] == -1).all(), "the ignored targets are the first copy's"
    assert np.array_equal(y[period:], x[1 : len(x) - period + 1])
    return period


@pytest.mark.parametrize("block_size", [9, 10, 512])
def test_copy_drills_repeat_random_tokens_and_score_only_what_copying_predicts(
    block_size: int,
) -> None:
    x, y = copy_drills(64, block_size, (300, 8000), np.random.default_rng(0))
    assert x.shape == y.shape == (64, block_size) and x.dtype == y.dtype == np.int64
    assert x.min() >= 300 and x.max() < 8000
    assert len(np.unique(x)) > min(7700, 32 * block_size) // 2  # random, not a few ids
    periods = {check_copy_drill(xr, yr) for xr, yr in zip(x, y, strict=True)}
    assert periods == {(block_size + 2) // 2}  # the twin half a row back


def test_mixing_in_copy_drills_replaces_that_share_of_rows_and_keeps_the_rest() -> None:
    x = np.arange(80, dtype=np.int64).reshape(8, 10)
    y = x + 1
    mx, my = mix_in_copy_drills(x.copy(), y.copy(), 0.25, (300, 8000), np.random.default_rng(3))
    drills = (my == -1).any(axis=1)
    assert drills.sum() == 2 and (mx[drills] >= 300).all()
    assert np.array_equal(mx[~drills], x[~drills]) and np.array_equal(my[~drills], y[~drills])
