"""Document-aligned training batches: every row starts at a document, like a generation prompt.

A bin is ``doc <|endoftext|> doc <|endoftext|> ...``. Random windows (`TokenBins.sample_batch`)
start mid-document, so a question-answer example rarely lies whole inside one, and the model
seldom sees a document from its first token with an EOT before it, the way `generate` prompts it.
`DocumentWindows` instead fills each row with whole documents chosen best-fit (the idea of
nanochat's BOS-aligned best-fit loader): from a few random candidates, the longest that still
fits, again and again; when none fits, the shortest candidate is cropped to the room left, so
rows need no padding.

A *document segment* is a document with the EOT before it: ``EOT doc``. Segments placed one after
another read exactly like the stream (``EOT doc EOT doc``), so the model still learns to end a
document with EOT. The first document of a bin has no EOT before it; `DocumentWindows` gives it a
virtual one, so that every row starts with EOT.

A document longer than a row is split into pieces of one row (the first starts at its EOT, the
others continue it), so its tail is trained on too, as random windows would. A row's first
piece is that of a random token of the split, so every piece gets rows in proportion to its
length, as with random windows; only the room it leaves is filled best-fit.
"""

from __future__ import annotations

import numpy as np

from jobgpt.errors import DataError

# Random candidate documents a row chooses from. More fill rows with fewer crops but cost time;
# with 16, a 16 x 256 batch takes well under a millisecond (see `DocumentWindows.sample`).
CANDIDATES = 16
# document_starts reads the bin in chunks of this many tokens: the comparison mask of a
# 100M-token bin would otherwise take 100 MB at once.
SCAN_CHUNK = 1 << 24
# fit_shares' default context sizes: those of the presets.
FIT_SIZES = (256, 512, 1024)


def document_starts(tokens: np.ndarray, eot_id: int) -> np.ndarray:
    """Offsets where each document's segment starts, int64, in stream order.

    The segment of a document starts at the EOT before it (x[0] is EOT, as in a generation
    prompt), so the offsets are the EOTs followed by another token; the last EOT of a bin
    ends the last document and starts none. The first document has no EOT before it unless
    the stream begins with one: its offset is then 0, pointing at its first token.
    """
    n = len(tokens)
    found = [np.zeros(0, np.int64)]
    if n and tokens[0] != eot_id:
        found.append(np.zeros(1, np.int64))
    for begin in range(0, n, SCAN_CHUNK):
        chunk = tokens[begin : begin + SCAN_CHUNK]  # a view of the memmap, not a copy
        found.append(np.flatnonzero(chunk == eot_id).astype(np.int64) + begin)
    starts = np.concatenate(found)
    return starts[starts < n - 1]  # an EOT at the very end precedes no document


def document_lengths(starts: np.ndarray, n_tokens: int) -> np.ndarray:
    """Length of each segment that starts at ``starts``: up to the next start, the last one up
    to ``n_tokens`` (pass the offset of the bin's final EOT to leave that EOT out)."""
    ends = np.append(np.asarray(starts[1:], np.int64), n_tokens)
    return ends - np.asarray(starts, np.int64)


def split_long(starts: np.ndarray, lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the pieces of at most `size` tokens that the documents split into,
    in stream order: a document of `size` tokens or fewer is one piece."""
    pieces = -(-lengths // size)  # ceil: pieces per document
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)  # index of each piece's first sibling
    k = np.arange(int(pieces.sum())) - first  # piece number within its document
    doc_lengths = np.repeat(lengths, pieces)
    return np.repeat(starts, pieces) + k * size, np.minimum(size, doc_lengths - k * size)


def fit_shares(lengths: np.ndarray, sizes: tuple[int, ...] = FIT_SIZES) -> dict[int, float]:
    """Share of documents that fit each context size, from their segment lengths.

    A segment of ``size + 1`` tokens fits a ``size``-token context: a row holds size + 1 tokens
    (x is the first size, y the last size), so every token of the document is still predicted
    with all of the document before it in view. 0.0 for each size when there are no documents.
    """
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return {size: 0.0 for size in sizes}
    return {size: float(np.mean(lengths <= size + 1)) for size in sizes}


def fit_text(lengths: np.ndarray, block_size: int) -> str:
    """The start-up report's line: "62% of training documents fit the 256-token context"."""
    if len(lengths) == 0:
        return f"no training documents to fit the {block_size}-token context"
    share = fit_shares(lengths, (block_size,))[block_size]
    return f"{share:.0%} of training documents fit the {block_size}-token context"


class DocumentWindows:
    """Document-aligned (x, y) batches from one split's tokens.

    ``tokens`` is the split's bin (a uint16/uint32 memmap is read, never copied); memory is two
    int64 arrays of one entry per document. Sampling draws only from the ``rng`` it is given,
    so a batch depends on that generator's state alone (exact resume restores it).
    """

    def __init__(
        self, tokens: np.ndarray, eot_id: int, block_size: int, candidates: int = CANDIDATES
    ) -> None:
        if block_size < 1 or candidates < 1:
            raise ValueError(
                f"block_size and candidates must be >= 1, got {block_size}, {candidates}"
            )
        self.tokens = tokens
        self.eot_id = int(eot_id)
        self.block_size = block_size
        self.candidates = candidates
        starts = document_starts(tokens, self.eot_id)
        if len(starts) == 0:
            raise DataError(
                f"the token stream ({len(tokens):,} tokens) holds no document",
                "rebuild the bins from a corpus with text in it (jobgpt dataset)",
            )
        n = len(tokens)
        end = n - 1 if tokens[n - 1] == self.eot_id else n  # the final EOT starts nothing
        if starts[0] == 0 and tokens[0] != self.eot_id:
            starts[0] = -1  # the virtual EOT before the first document (see `_gather`)
        self.lengths = document_lengths(starts, end)  # of whole documents (the report's)
        self.starts, self.piece_lengths = split_long(starts, self.lengths, block_size + 1)
        # A piece that continues a document has no EOT before it: it may start a row, but
        # placed behind another document it would read as that document's continuation.
        self.opens_document = np.isin(self.starts, starts)
        self._ends = np.cumsum(self.piece_lengths)  # drawing a token picks the piece it is in

    def __len__(self) -> int:
        """The number of documents."""
        return len(self.lengths)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` rows, each starting at a document's EOT: x, y int64 (B, T), y one token
        ahead of x within the row's sequence of placed documents."""
        rows = self._gather(self.placements(batch_size, rng))  # (B, T+1)
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])

    def placements(self, batch_size: int, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
        """For each row, its segments as (document index, tokens taken), in row order. Every
        segment but possibly the last is a whole document; together they fill block_size + 1."""
        return [self._fill_row(rng) for _ in range(batch_size)]

    def _fill_row(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """The row's first piece is drawn as random windows would be (a random token's piece,
        whatever its length), so no piece is starved; the room left is filled best-fit: the
        longest of a few random candidates that fits, again and again; when none does, the
        shortest is cropped to the room left (it wastes the fewest tokens)."""
        room = self.block_size + 1
        row: list[tuple[int, int]] = []
        pool = self._draw(rng, 1)  # (length, piece index)
        while room > 0:
            if not row:
                length, piece = pool.pop()
            else:
                while not pool:  # a row of short documents can use up its candidates
                    drawn = self._draw(rng, self.candidates)
                    pool = [c for c in drawn if self.opens_document[c[1]]]
                fitting = [c for c in pool if c[0] <= room]
                # by length only: among equals the first drawn, so ties favour no index
                pick = max if fitting else min
                length, piece = pick(fitting or pool, key=lambda c: c[0])
                pool.remove((length, piece))
            take = min(length, room)
            row.append((piece, take))
            room -= take
        return row

    def _draw(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        """`n` pieces, each that of a random token of the split: (length, piece index)."""
        tokens = rng.integers(0, int(self._ends[-1]), size=n)
        drawn = np.searchsorted(self._ends, tokens, side="right")
        return list(zip(self.piece_lengths[drawn].tolist(), drawn.tolist(), strict=True))

    def _gather(self, rows: list[list[tuple[int, int]]]) -> np.ndarray:
        """The tokens of the placed segments, int64 (B, T+1), read from the stream in one go."""
        docs = np.array([doc for row in rows for doc, _ in row], np.int64)
        takes = np.array([take for row in rows for _, take in row], np.int64)
        where = np.cumsum(takes) - takes  # each segment's first position in the flat batch
        # position p of a segment that starts at stream offset s and batch position w reads s+p-w
        offsets = np.repeat(self.starts[docs] - where, takes) + np.arange(takes.sum())
        flat = self.tokens[np.maximum(offsets, 0)].astype(np.int64)
        flat[offsets < 0] = self.eot_id  # the first document's virtual EOT
        return flat.reshape(len(rows), self.block_size + 1)


def copy_drills(
    batch_size: int, block_size: int, token_ids: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` rows of a copying drill: half a row of random token ids from
    ``token_ids`` = (low, high), shown twice. The targets of the first half are -1 (ignored:
    random tokens teach nothing), so the loss is on the repeat alone.

    Why: answering from a posting means copying its numbers, addresses and e-mails: attending
    to the right earlier token (*where*) and writing that token's own id (*what*). Plain text
    teaches the *what* only after far more tokens than a laptop run sees. Here *where* is as
    easy as it gets (always the same distance back), so the drills teach the *what* in a few
    hundred steps; text then teaches where to look. Measured on the demo (README, "Evaluation"):
    with a varied distance per row, 300 steps of drills teach nothing.
    x, y int64 (B, T) as `DocumentWindows.sample` gives them."""
    low, high = token_ids
    half = (block_size + 2) // 2  # two halves make the block_size + 1 tokens of x and y
    drawn = rng.integers(low, high, size=(batch_size, half))
    rows = np.concatenate([drawn, drawn], axis=1)[:, : block_size + 1]
    x, y = rows[:, :-1].copy(), rows[:, 1:].copy()
    # y[t] = row[t + 1]: the first half's tokens, and the repeat's first (nothing says where
    # the repeat starts), are unpredictable; from there on each is the one after its twin.
    y[:, :half] = -1
    return x, y


def mix_in_copy_drills(
    x: np.ndarray, y: np.ndarray, share: float, token_ids: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The batch with round(share * rows) of its rows, chosen at random, replaced by copying
    drills: after the warm-up on drills alone, a few keep the copying the text does not ask
    for often enough to keep (measured on the demo: without them the answers stop copying)."""
    batch, block_size = x.shape
    if share == 0:
        return x, y  # and the generator untouched: batches as in a run without drills
    rows = rng.choice(batch, size=round(share * batch), replace=False)
    x[rows], y[rows] = copy_drills(len(rows), block_size, token_ids, rng)
    return x, y
