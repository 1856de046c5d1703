"""Stage 1: train, save, load and fingerprint the BPE tokenizer (-> data/tokenizer.json).

The tokenizer must be lossless: ``decode(encode(text)) == text`` for every document, whatever
it contains. Three choices make that true, and each is checked by the tests:

* **No normalizer.** NFKC would turn the bullet ``ㆍ`` (U+318D) into another character.
* **A pre-tokenizer that only cuts, never rewrites.** Text is cut before each space, so a piece is
  one optional space plus everything up to the next space: `` 경험이``, ``운영\\n•``. Korean
  particles, punctuation and line breaks can merge with their word, which is what makes this
  tokenizer compact (6.7 UTF-8 bytes per token on held-out real postings at vocab 24,000, against
  5.6 for GPT-4-style byte-level BPE). Runs of digits are cut out as pieces of their own:
  `` (30만원`` is cut into `` (``, ``30``, ``만원``, and ``02-5841-4676`` never becomes
  ``02-``, ``58``, ``4``, ``1-4``, ... A number then looks the same wherever it stands, so a
  model answering from a posting can copy it token by token (phone numbers and dates in the
  demo's held-out answers: from 12 of 25 right to 25 of 25; README, "Evaluation"). It costs 0.2
  bytes per token. The pieces join back to the input.
* **Byte fallback.** BPE runs on characters; a character the vocabulary lacks (뷁, a rare hanja,
  a new emoji) is spelled as its UTF-8 bytes with the 256 tokens ``<0x00>``..``<0xFF>``, so there
  is never an unknown token. Those byte tokens live in the model's vocabulary, *not* among the
  added tokens: an added token is matched in raw text, so a user typing the literal ``<0x41>``
  would get the byte "A" back.

Ids: the eight special tokens come first (``<|endoftext|>`` is 0), then the 256 byte tokens,
then characters and merges in the order BPE learned them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from jobgpt.commands import command
from jobgpt.config import TokenizerConfig
from jobgpt.errors import ConfigError, DataError
from jobgpt.files import (
    atomic_write_text,
    check_output,
    exclusive,
    refuse_to_replace,
    sha256_text,
    sweep_temp_files,
)
from jobgpt.progress import Progress
from jobgpt.qa import EOT, PAD, QA_MARKERS

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = (EOT, PAD, *QA_MARKERS)
# EOT and PAD are control tokens: decode(..., skip_special_tokens=True) drops them. The QA markers
# are text the model reads and writes, so decode always keeps them.
CONTROL_TOKENS = frozenset({EOT, PAD})

BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{b:02X}>" for b in range(256))
FIRST_BYTE_ID = len(SPECIAL_TOKENS)  # byte b has id FIRST_BYTE_ID + b
RESERVED_IDS = len(SPECIAL_TOKENS) + len(BYTE_TOKENS)

# A piece is an optional space plus a run of digits or a run of anything else up to the next
# space; runs of spaces keep their last space for the following word (the GPT-2 `\s+(?!\S)`
# trick). Newlines and tabs are ordinary characters here: cutting at them too (GPT-2 style) cost
# 1.0 bytes per token on real postings, and even gluing them to the next word instead 0.3.
# Digits cut one by one (Llama, Qwen) would cost 0.4, and the demo copied worse with them (88%
# of QA fields right against 99%): a lone digit recurs all over a posting, so it says little
# about where a copy goes on.
SPLIT_PATTERN = r" ?\d+| ?[^ \d]+| +(?![^ ])"

# Longer tokens mostly memorise boilerplate (URLs, rows of dashes); capping them costs ~0.03
# bytes/token on real postings.
MAX_TOKEN_CHARS = 16
# Characters are counted in batches of this many: numpy counts fast, and a batch stays ~4 MB.
_COUNT_BATCH_CHARS = 1 << 20

_SPECIAL_SPLIT = re.compile("|".join(map(re.escape, SPECIAL_TOKENS)))
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")  # what the ByteFallback decoder turns into a byte
# The health report's held-out slice: ~2% of the documents after the first 100 (a tiny corpus
# keeps everything for training), at most 500.
_HELD_OUT_PER_MILLE = 20
_HELD_OUT_AFTER_DOCS = 100
_HELD_OUT_MAX_DOCS = 500


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a lossless byte-fallback BPE tokenizer on ``texts`` (streamed, not kept in memory).

    The result has at most ``vocab_size`` ids, including the 8 special and 256 byte tokens. It can
    have fewer when the corpus is too small to learn that many merges (a warning says so).
    """
    if vocab_size <= RESERVED_IDS:
        raise ConfigError(
            f"vocab_size {vocab_size} leaves no room for learned tokens",
            f"use more than {RESERVED_IDS} (the special and byte tokens), e.g. --vocab-size 24000",
        )
    tok = _blank_tokenizer()
    # Tiny vocabularies keep only the most frequent characters; the rest fall back to bytes.
    limit_alphabet = vocab_size - RESERVED_IDS
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS),  # the trainer counts the special tokens itself
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet,
        max_token_length=MAX_TOKEN_CHARS,
        show_progress=False,
    )
    pieces = _without_special_tokens(texts)
    tok.train_from_iterator(_settle_alphabet_ties(pieces, limit_alphabet), trainer)
    tok = _with_byte_tokens(tok)
    achieved = tok.get_vocab_size()
    if achieved < vocab_size:
        logger.warning(
            "tokenizer: the corpus supports only %s of the requested %s tokens "
            "(말뭉치가 작아 어휘가 %s개입니다). The model is sized from the tokenizer, so this is "
            "safe; add text for a larger vocabulary, or pass --vocab-size %s to silence this",
            f"{achieved:,}",
            f"{vocab_size:,}",
            f"{achieved:,}",
            achieved,
        )
    return tok


def _without_special_tokens(texts: Iterable[str]) -> Iterator[str]:
    """The text between special-token strings: what BPE may learn merges from.

    The trainer does not cut added tokens out of its input, so a corpus in the QA format would
    spend ids on pieces like ``[QUESTION]`` or ``ANSWER]``, which encoding never produces: the
    added token always matches first.
    """
    for text in texts:
        yield from filter(None, _SPECIAL_SPLIT.split(text))


def _settle_alphabet_ties(texts: Iterable[str], limit: int) -> Iterator[str]:
    """``texts``, then one-character texts that make the trainer's alphabet deterministic.

    With more distinct characters than ``limit``, the trainer keeps the ``limit`` most frequent
    ones, but orders equal counts by Rust hash-map order, which is random in every process: when
    the cut fell inside a run of equal counts, the same corpus gave different tokenizers (ids).
    The trainer counts every character of the texts (no normalizer; added tokens are not cut
    out while training), so counting here gives the same numbers. One more occurrence of each
    tied character we keep (lowest code points first) moves the cut between two counts; a
    one-character text holds no pair, so no merge changes.
    """
    counts = np.zeros(sys.maxunicode + 1, dtype=np.int64)  # one slot per code point
    batch: list[str] = []
    size = 0
    for text in texts:
        yield text
        batch.append(text)
        size += len(text)
        if size >= _COUNT_BATCH_CHARS:
            _count_chars(batch, counts)
            batch, size = [], 0
    _count_chars(batch, counts)
    present = np.flatnonzero(counts)
    if len(present) <= limit:
        return  # every character is kept: nothing to break
    ranked = present[np.lexsort((present, -counts[present]))]  # by count down, then code point
    last_kept = counts[ranked[limit - 1]]
    if counts[ranked[limit]] == last_kept:
        yield from (chr(c) for c in ranked[:limit] if counts[c] == last_kept)


def _count_chars(batch: list[str], counts: np.ndarray) -> None:
    """Add the code points of ``batch`` to ``counts`` (8x faster than collections.Counter).

    Counted in slices of _COUNT_BATCH_CHARS, so one huge document costs ~12 bytes per character
    of a slice, not of the document."""
    text = "".join(batch)
    for start in range(0, len(text), _COUNT_BATCH_CHARS):
        piece = text[start : start + _COUNT_BATCH_CHARS].encode("utf-32-le", "surrogatepass")
        counts += np.bincount(np.frombuffer(piece, dtype=np.uint32), minlength=len(counts))


def _blank_tokenizer(vocab: dict[str, int] | None = None, merges=None) -> Tokenizer:
    """The pipeline around the BPE model: no normalizer, cut-only pre-tokenizer, byte decoder."""
    tok = Tokenizer(models.BPE(vocab, merges, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    # Matched in raw text before BPE, so each is one id. (add_special_tokens would mark the QA
    # markers as skippable on decode; add_tokens keeps our own flag.)
    tok.add_tokens(
        [AddedToken(t, special=t in CONTROL_TOKENS, normalized=False) for t in SPECIAL_TOKENS]
    )
    return tok


def _with_byte_tokens(trained: Tokenizer) -> Tokenizer:
    """Rebuild the trained BPE with the 256 byte tokens inserted after the special tokens.

    The trainer cannot add them itself without also making them added tokens (see the module
    docstring). Merges are kept in their learned order; a learned token spelled like a byte token
    (from a corpus that contains the text "<0x41>") would decode to that byte, so it is dropped
    together with every merge built on it.
    """
    learned = sorted(trained.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
    dropped: set[str] = set()
    merges: list[tuple[str, str]] = []
    for left, right in _merges(trained):
        if left in dropped or right in dropped or _BYTE_TOKEN.fullmatch(left + right):
            dropped.add(left + right)
        else:
            merges.append((left, right))
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *BYTE_TOKENS):
        vocab[token] = len(vocab)
    for token, _ in learned:
        if token not in vocab and token not in dropped:
            vocab[token] = len(vocab)
    return _blank_tokenizer(vocab, merges)


def _merges(tok: Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


# --- files and fingerprints -----------------------------------------------------------------------


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    """Write ``tok`` as a standard tokenizer.json, atomically (a crash never leaves half a file)."""
    path = Path(path)
    atomic_write_text(path, tok.to_str())
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer.json written by `jobgpt tokenizer`, with a clear error if it is not one."""
    path = Path(path)
    fix = f"train one with `{command('tokenizer')}` (jobgpt tokenizer)"
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path}", fix)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust loader raises a bare Exception on bad JSON
        raise DataError(f"{path} is not a valid tokenizer.json ({err})", fix) from err
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise DataError(f"{path} lacks the special token(s) {missing}", fix)
    return tok


def tokenizer_sha256(tok: Tokenizer) -> str:
    """Hex sha256 of the canonical JSON ``tok.to_str()``.

    `save_tokenizer` writes exactly that string, so this equals the sha256 of the saved file,
    and a checkpoint that embeds the JSON string can be matched against the file on disk.
    """
    return sha256_text(tok.to_str())


def mismatch(tok: Tokenizer, sha256: str | None, vocab_size: int | None) -> str | None:
    """Why ``tok`` is not the tokenizer recorded as (sha256, vocab_size), or None when it is.

    The one check behind every "same tokenizer?" question (bins vs tokenizer, checkpoint vs
    bins, a checkpoint's embedded tokenizer vs its model): the same ids under another tokenizer
    mean other text, so a mismatch must never pass. None for a recorded value skips that part.
    """
    return fingerprint_mismatch((sha256, vocab_size), (tokenizer_sha256(tok), tok.get_vocab_size()))


def fingerprint_mismatch(
    recorded: tuple[str | None, int | None], actual: tuple[str, int]
) -> str | None:
    """`mismatch` on (sha256, vocab_size) fingerprints, for callers that hold no tokenizer."""
    (sha, vocab), (our_sha, our_vocab) = recorded, actual
    if sha in (None, our_sha) and vocab in (None, our_vocab):
        return None
    return (
        f"recorded sha256 {str(sha)[:12]}…, vocab {vocab} vs this tokenizer's sha256 "
        f"{our_sha[:12]}…, vocab {our_vocab} — the same ids would mean other text"
    )


def special_id(tok: Tokenizer, token: str) -> int:
    """The id of one special token, or a DataError for a tokenizer that lacks it."""
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise DataError(
            f"the tokenizer has no {token!r} token",
            f"retrain it with `{command('tokenizer')}` (jobgpt tokenizer)",
        )
    return token_id


# --- health report --------------------------------------------------------------------------------


@dataclass
class Health:
    """How well a tokenizer fits text it did not train on."""

    documents: int
    bytes_per_token: float
    round_trip: float  # share of documents with decode(encode(doc)) == doc
    byte_fallback: float  # share of tokens that are raw bytes (characters missing from the vocab)


def measure(tok: Tokenizer, texts: list[str]) -> Health:
    """Compression, exact round trips and byte-fallback rate of ``tok`` on ``texts``."""
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in encodings)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    exact = sum(
        tok.decode(e.ids, skip_special_tokens=False) == t
        for e, t in zip(encodings, texts, strict=True)
    )
    last_byte = FIRST_BYTE_ID + len(BYTE_TOKENS)
    n_fallback = sum(FIRST_BYTE_ID <= i < last_byte for e in encodings for i in e.ids)
    return Health(
        documents=len(texts),
        bytes_per_token=n_bytes / max(n_tokens, 1),
        round_trip=exact / max(len(texts), 1),
        byte_fallback=n_fallback / max(n_tokens, 1),
    )


def is_held_out(text: str, seed: int) -> bool:
    """Deterministic ~2% slice of documents, decided by the text alone (order-independent)."""
    return zlib.crc32(text.encode("utf-8"), seed & 0xFFFFFFFF) % 1000 < _HELD_OUT_PER_MILLE


def _split_held_out(
    texts: Iterable[str], seed: int, held_out: list[str], spare: list[str]
) -> Iterator[str]:
    """Yield training texts; collect the held-out slice, and the first training texts as a spare
    sample for corpora so small that nothing was held out."""
    for i, text in enumerate(texts):
        if (
            i >= _HELD_OUT_AFTER_DOCS
            and len(held_out) < _HELD_OUT_MAX_DOCS
            and is_held_out(text, seed)
        ):
            held_out.append(text)
            continue
        if len(spare) < _HELD_OUT_AFTER_DOCS:
            spare.append(text)
        yield text


# --- the stage ------------------------------------------------------------------------------------


def run(cfg: TokenizerConfig) -> Tokenizer:
    """`jobgpt tokenizer`: train on the corpus, save tokenizer.json, log a health report."""
    from jobgpt.corpus import iter_documents
    from jobgpt.demo_corpus import ensure_default_corpus

    check_output(cfg.out, "--out")  # before the training it would waste
    refuse_to_replace(cfg.out, cfg.overwrite, "a tokenizer")
    ensure_default_corpus(cfg.input)
    with exclusive(cfg.out, "--out"):
        sweep_temp_files(Path(cfg.out).parent)
        start = time.perf_counter()
        held_out: list[str] = []
        spare: list[str] = []
        docs = _with_progress(iter_documents(cfg.input))
        tok = train_tokenizer(
            _split_held_out(docs, cfg.seed, held_out, spare), cfg.vocab_size, cfg.min_frequency
        )
        seconds = time.perf_counter() - start
        path = save_tokenizer(tok, cfg.out)
    sample, where = (held_out, "held-out") if held_out else (spare, "training (none held out)")
    health = measure(tok, sample)
    _log_report(tok, cfg.vocab_size, health, where, seconds)
    korean = "검증 문서" if held_out else "학습 문서"
    print(
        f"tokenizer: {tok.get_vocab_size():,} tokens (어휘 크기) -> {path} | "
        f"{health.bytes_per_token:.2f} bytes/token, round trip {health.round_trip:.1%} "
        f"on {health.documents:,} {where.split()[0]} docs ({korean})"
    )
    return tok


def _with_progress(documents: Iterable) -> Iterator[str]:
    with Progress("reading corpus") as bar:
        for doc in documents:
            bar.update(len(doc.text.encode("utf-8")))
            yield doc.text


def _log_report(tok: Tokenizer, requested: int, health: Health, where: str, seconds: float) -> None:
    specials = ", ".join(f"{t}={tok.token_to_id(t)}" for t in SPECIAL_TOKENS)
    lines = [
        f"trained in {seconds:.1f}s",
        f"vocab: {tok.get_vocab_size():,} achieved / {requested:,} requested "
        f"(incl. {len(SPECIAL_TOKENS)} special + {len(BYTE_TOKENS)} byte tokens)",
        f"on {health.documents:,} {where} docs: {health.bytes_per_token:.2f} bytes/token, "
        f"exact round trip {health.round_trip:.1%}, byte fallback {health.byte_fallback:.3%} "
        "of tokens",
        f"special ids: {specials}",
    ]
    logger.info("tokenizer health:\n  %s", "\n  ".join(lines))
    if health.round_trip < 1.0:  # cannot happen by design; if it does, say so loudly
        logger.warning(
            "tokenizer: %.1f%% of documents do not round-trip!", 100 - 100 * health.round_trip
        )
