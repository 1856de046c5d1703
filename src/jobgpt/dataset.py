"""Stage 2: encode the corpus into token bins (-> data/train.bin, data/val.bin, data/meta.json).

A bin is a flat array of token ids (``uint16`` while the vocabulary fits, else ``uint32``), every
document followed by ``<|endoftext|>``. ``meta.json`` beside it records what the bins were made
from, and `TokenBins` refuses bins that do not match their tokenizer.

How documents reach a split, in one streaming pass plus a cheap copy:

1. **Read and encode** (`_encode_corpus`). Exact duplicates are dropped; every kept document is
   encoded (in batches, on a background thread) into a temporary spool file; only its token
   count and a 64-bit group key stay in memory.
2. **Group near-duplicates** (`Groups`). Postings of one company repeat the same intro and
   benefits paragraphs; a twin in val would make val loss measure memorisation. Documents sharing
   a paragraph of ``group_min_chars`` or more are joined (union-find; a group is named by its
   smallest paragraph fingerprint, so the grouping does not depend on the input order).
3. **Split by group** (`_assign_splits`). A group goes to val when a seeded hash of its name falls
   below ``val_fraction``: deterministic and order-independent. If that leaves val too small for
   a few ``block_size`` windows, the next groups by hash move over too.
4. **Copy** each document's tokens from the spool to train.bin or val.bin; write meta.json last.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from jobgpt.bins import (
    BIN_FILES,
    FORMAT_VERSION,
    META_FILE,
    PENDING_FILE,
    SPLITS,
    finish_publish,
    publish,
    token_dtype,
)
from jobgpt.config import DatasetConfig
from jobgpt.corpus import SEPARATE_POSTINGS
from jobgpt.errors import DataError
from jobgpt.files import (
    check_output,
    exclusive,
    os_error,
    refuse_to_replace,
    sweep_temp_files,
    temp_path,
)
from jobgpt.progress import Progress
from jobgpt.qa import EOT
from jobgpt.splits import Groups, link_document, split_score
from jobgpt.tokenizer import load_tokenizer, special_id, tokenizer_sha256

logger = logging.getLogger(__name__)

MIN_VAL_WINDOWS = 4  # val should hold at least this many block_size windows
BATCH_BYTES = 1 << 20  # documents are encoded in batches of about this much text


# --- pass 1: read, deduplicate, group, encode to a spool ------------------------------------------


@dataclass
class _Corpus:
    """What pass 1 keeps in memory: per kept document, its token count and group key."""

    doc_tokens: list[int] = field(default_factory=list)
    doc_keys: list[int] = field(default_factory=list)
    groups: Groups = field(default_factory=Groups)
    documents: int = 0  # read, duplicates included
    duplicates: int = 0
    bytes: int = 0  # UTF-8 bytes of the kept documents


def _encode_corpus(
    texts: Iterable[str], tok: Tokenizer, spool: Path, dtype: np.dtype, min_chars: int
) -> _Corpus:
    """Deduplicate, fingerprint and encode ``texts`` into ``spool`` (tokens, EOT after each)."""
    corpus = _Corpus()
    eot = special_id(tok, EOT)
    # One background thread encodes batch k (the Rust encoder releases the GIL and uses every
    # core) while this thread reads and fingerprints batch k+1. At most two batches are alive.
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        open(spool, "wb") as out,
        Progress("encoding") as bar,
    ):
        pending: Future | None = None
        for batch, n_bytes in text_batches(_unique(texts, corpus, min_chars)):
            future = pool.submit(_encode_batch, tok, batch, eot, dtype)
            if pending is not None:
                _write_batch(pending.result(), out, corpus)
            pending = future
            bar.update(n_bytes)
        if pending is not None:
            _write_batch(pending.result(), out, corpus)
    return corpus


def _unique(texts: Iterable[str], corpus: _Corpus, min_chars: int) -> Iterator[tuple[str, int]]:
    """Drop exact duplicates; record each kept document's group key. Yields (text, bytes)."""
    seen: set[int] = set()
    for text in texts:
        corpus.documents += 1
        # Python's own string hash is fast and fine for this in-process set; group names must be
        # the same in every run, so they use `fingerprint`.
        if (key := hash(text)) in seen:
            corpus.duplicates += 1
            continue
        seen.add(key)
        n_bytes = len(text.encode("utf-8"))
        corpus.doc_keys.append(link_document(corpus.groups, text, min_chars))
        corpus.bytes += n_bytes
        yield text, n_bytes


def text_batches(docs: Iterable[tuple[str, int]]) -> Iterator[tuple[list[str], int]]:
    """Group documents into batches of about BATCH_BYTES; yields (texts, bytes)."""
    batch: list[str] = []
    size = 0
    for text, n_bytes in docs:
        batch.append(text)
        size += n_bytes
        if size >= BATCH_BYTES:
            yield batch, size
            batch, size = [], 0
    if batch:
        yield batch, size


def _encode_batch(
    tok: Tokenizer, texts: list[str], eot: int, dtype: np.dtype
) -> tuple[np.ndarray, list[int]]:
    """(all ids of the batch with EOT after each document, tokens per document)."""
    # NumPy 2 (required) raises OverflowError on an id the dtype cannot hold: never a silent wrap.
    docs = [np.array(e.ids, dtype) for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    end = np.array([eot], dtype)
    flat = np.concatenate([part for ids in docs for part in (ids, end)])
    return flat, [len(ids) + 1 for ids in docs]


def _write_batch(result: tuple[np.ndarray, list[int]], out, corpus: _Corpus) -> None:
    flat, lengths = result
    flat.tofile(out)
    corpus.doc_tokens.extend(lengths)


# --- pass 2: assign groups to splits, copy --------------------------------------------------------


@dataclass
class _Split:
    is_val: np.ndarray  # bool per kept document
    groups: int
    grouped_docs: int  # documents that share a group with at least one other
    largest_group: int
    moved: int  # groups moved to val beyond the hash rule, to give val enough windows


def _assign_splits(corpus: _Corpus, cfg: DatasetConfig) -> _Split:
    roots = np.fromiter(
        (corpus.groups.find(k) for k in corpus.doc_keys), np.uint64, len(corpus.doc_keys)
    )
    names, inverse, sizes = np.unique(roots, return_inverse=True, return_counts=True)
    if len(names) < 2:
        raise _one_group(len(roots), corpus.duplicates, cfg)
    group_tokens = np.bincount(inverse, weights=np.asarray(corpus.doc_tokens, np.float64))
    scores = np.array([split_score(int(g), cfg.seed) for g in names])
    val = scores < cfg.val_fraction

    # Tiny corpora: the hash rule may give val too few tokens; move the next groups by score.
    need = MIN_VAL_WINDOWS * (cfg.block_size + 1)
    total = group_tokens.sum()
    val_tokens = group_tokens[val].sum()
    moved = 0
    for g in np.argsort(scores, kind="stable"):
        if val_tokens >= need:
            break
        if val[g] or val_tokens + group_tokens[g] > total / 2:  # train keeps the majority
            continue
        val[g] = True
        val_tokens += group_tokens[g]
        moved += 1
    return _Split(
        is_val=val[inverse],
        groups=len(names),
        grouped_docs=int(sizes[sizes > 1].sum()),
        largest_group=int(sizes.max(initial=0)),
        moved=moved,
    )


def _one_group(kept: int, duplicates: int, cfg: DatasetConfig) -> DataError:
    """One document means missing separators (--group-min-chars 0 would change nothing)."""
    where = ", ".join(cfg.input)
    if kept == 1:
        dropped = f" ({duplicates:,} exact duplicates of it dropped)" if duplicates else ""
        return DataError(
            f"{where} holds only 1 document{dropped}: none to hold out for val", SEPARATE_POSTINGS
        )
    return DataError(
        f"all {kept:,} documents form one group in {where}: they share paragraphs of "
        f"{cfg.group_min_chars}+ characters, so val cannot be held out without leaking",
        "add postings that do not share them, or pass --group-min-chars 0 to split them anyway "
        "(val loss then partly measures memorisation)",
    )


def _copy_splits(
    spool: Path, dtype: np.dtype, doc_tokens: list[int], is_val: np.ndarray, paths: dict
) -> dict[str, dict[str, int]]:
    """Copy each document's tokens from the spool to its split's file; return per-split counts."""
    bounds = np.concatenate([[0], np.cumsum(doc_tokens, dtype=np.int64)])  # doc i: [b_i, b_i+1)
    tokens = np.memmap(spool, dtype=dtype, mode="r")
    cuts = np.flatnonzero(is_val[1:] != is_val[:-1]) + 1  # runs of one split: copied at once
    edges = [0, *cuts.tolist(), len(is_val)]
    counts = {name: {"tokens": 0, "documents": 0} for name in SPLITS}
    with open(paths["train"], "wb") as train, open(paths["val"], "wb") as val:
        files = {"train": train, "val": val}
        for a, b in pairwise(edges):
            name = "val" if is_val[a] else "train"
            tokens[bounds[a] : bounds[b]].tofile(files[name])
            counts[name]["tokens"] += int(bounds[b] - bounds[a])
            counts[name]["documents"] += b - a
    return counts


# --- the stage ------------------------------------------------------------------------------------


def run(cfg: DatasetConfig) -> dict[str, Any]:
    """`jobgpt dataset`: encode the corpus into train.bin/val.bin and write meta.json."""
    from jobgpt.demo_corpus import ensure_default_corpus

    out_dir = Path(cfg.out_dir)
    check_output(out_dir, "--out-dir", is_dir=True)
    refuse_to_replace(out_dir / META_FILE, cfg.overwrite, "token bins")
    tok = load_tokenizer(cfg.tokenizer)  # before writing a demo corpus that could not be used
    ensure_default_corpus(cfg.input)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir, "--out-dir", is_dir=True):
        finish_publish(out_dir)  # an interrupted build's swap first, then its leftovers
        sweep_temp_files(out_dir)
        for leftover in out_dir.glob(".*.staged"):  # a build killed before its swap began
            leftover.unlink()
        start = time.perf_counter()
        meta, corpus, split = _build(cfg, tok, out_dir)
    _report(meta, corpus, split, time.perf_counter() - start, out_dir)
    return meta


def _build(cfg: DatasetConfig, tok: Tokenizer, out_dir: Path) -> tuple[dict, _Corpus, _Split]:
    """Encode, split and publish the bins; temp files are removed whatever happens."""
    from jobgpt.corpus import read_documents
    from jobgpt.inputs import resolve_inputs

    dtype = token_dtype(tok.get_vocab_size())
    paths = resolve_inputs(cfg.input)
    sources = [{"path": str(p), "bytes": p.stat().st_size} for p in paths]
    # Not `temp_path` names: the sweep of temp files must never take bins a pending swap needs.
    staged = {name: out_dir / f".{BIN_FILES[name]}.staged" for name in SPLITS}
    spool = temp_path(out_dir / "spool.bin")
    try:
        texts = (doc.text for doc in read_documents(paths))
        corpus = _encode_corpus(texts, tok, spool, dtype, cfg.group_min_chars)
        split = _assign_splits(corpus, cfg)
        counts = _copy_splits(spool, dtype, corpus.doc_tokens, split.is_val, staged)
        _check_split_sizes(counts, cfg)
        meta = _meta(cfg, tok, dtype, counts, corpus, split, sources)
        publish(out_dir, meta, staged)
    except OSError as err:
        if err.filename and Path(err.filename).parent != out_dir:
            raise  # reading an input: the CLI names that file
        # writing: name the folder (numpy's short write on a full disk names no file)
        raise os_error(err, doing=f"writing the token bins in {out_dir}") from None
    finally:
        # Staged bins that a pending swap names are the new dataset: the next read completes it.
        swapping = (out_dir / PENDING_FILE).exists()
        for path in (spool, *([] if swapping else staged.values())):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    return meta, corpus, split


def _check_split_sizes(counts: dict, cfg: DatasetConfig) -> None:
    window = cfg.block_size + 1  # a window is block_size inputs plus the one target after them
    (train, val), val_docs = (counts[s]["tokens"] for s in SPLITS), counts["val"]["documents"]
    # A smaller block size shrinks neither split (val just needs fewer of the same moved groups).
    most = min(train, val) - 1
    lower = f", or lower --block-size to at most {most:,} (train with it too)" if most > 0 else ""
    for name in SPLITS:
        n = counts[name]["tokens"]
        if n < window:
            hint = f"add more text to the corpus (it has {train + val:,} tokens){lower}"
            # Moved groups never take val past half the tokens: only a large fraction did this.
            if name == "train" and val > train and train + val >= 2 * window:
                hint = (
                    f"lower --val-fraction, e.g. to the default 0.05: at {cfg.val_fraction} val "
                    f"took {val_docs:,} of the {val_docs + counts['train']['documents']:,} "
                    f"documents ({val:,} of {train + val:,} tokens)"
                )
            raise DataError(
                f"the {name} split has only {n:,} tokens ({counts[name]['documents']:,} documents)"
                f", fewer than one window of block_size+1 = {window:,}",
                hint,
            )
    if val < MIN_VAL_WINDOWS * window:
        few = f"val holds only {val:,} tokens, fewer than {MIN_VAL_WINDOWS} windows of {window:,}"
        logger.warning("%s: its loss will be noisy (add text or raise --val-fraction)", few)


def _meta(cfg, tok, dtype, counts, corpus: _Corpus, split: _Split, sources) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": tok.get_vocab_size(),
        "eot_id": special_id(tok, EOT),
        "tokenizer": {"path": str(cfg.tokenizer), "sha256": tokenizer_sha256(tok)},
        "splits": {name: {"file": BIN_FILES[name], **counts[name]} for name in SPLITS},
        "documents": {
            "read": corpus.documents,
            "duplicates_dropped": corpus.duplicates,
            "kept": len(corpus.doc_tokens),
            "groups": split.groups,
            "grouped_documents": split.grouped_docs,
            "largest_group": split.largest_group,
        },
        "split_rule": (
            "documents sharing a paragraph of >= group_min_chars characters form one group; a "
            "group goes to val if blake2b(seed, smallest paragraph fingerprint) / 2^64 < "
            f"val_fraction ({split.moved} more groups moved to val to hold "
            f"{MIN_VAL_WINDOWS} windows of block_size)"
        ),
        "input": list(cfg.input),  # as given: the rebuild hint repeats them
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "group_min_chars": cfg.group_min_chars,
        "block_size": cfg.block_size,
        "sources": sources,
    }


def _report(meta: dict, corpus: _Corpus, split: _Split, seconds: float, out_dir: Path) -> None:
    docs = meta["documents"]
    logger.info(
        f"dropped {docs['duplicates_dropped']:,} exact duplicates; {docs['grouped_documents']:,} "
        f"documents share long paragraphs and were kept together ({docs['groups']:,} groups, "
        f"largest {docs['largest_group']:,} documents)"
    )
    if split.moved:
        logger.info("moved %d more groups to val so it holds a few windows", split.moved)
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    total = train["tokens"] + val["tokens"]
    print(
        f"dataset: {train['tokens']:,} train / {val['tokens']:,} val tokens (학습/검증) from "
        f"{docs['kept']:,} documents ({train['documents']:,}/{val['documents']:,}), "
        f"{meta['dtype']}, {corpus.bytes / max(total, 1):.2f} bytes/token, "
        f"{corpus.bytes / 1e6 / seconds:.1f} MB/s -> {out_dir}/"
    )
