"""Free generations: do samples read as job postings, and how much do they repeat themselves?

`N` samples start from an empty prompt (a new document), seeded, with `jobgpt generate`'s default
sampling settings. Each is judged against the one posting template (`jobgpt.postings`):

- header: its first line is a title line like the template's (``=== [회사] 포지션 채용 ===``);
- sections in order: it has at least one of the template's section labels as a line of its own
  (``업무 내용:``), and those it has come in the template's order, none twice;
- ended: the model ended it itself (a stop token) rather than running out of tokens.

A sample that does all three reads as a posting. The demo corpus is QA examples, so a sample that
is one is judged on its ``[DOC]`` part (its end is still the whole sample's). Repetition is the
share of distinct token 3-grams among all of a sample's 3-grams (1.0: no 3-gram repeats),
averaged over the samples.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from tokenizers import Tokenizer

from jobgpt.generator import TextGenerator
from jobgpt.postings import SECTION_LABELS, is_header_line
from jobgpt.qa import DOC_END, DOC_START

# How much of the first sample the results keep, to show what the model writes.
SHOWN_CHARS = 1500
SAMPLE_BATCH = 16  # samples drawn as one batch: --samples 1000 must not hold 1000 KV caches


@dataclass(frozen=True)
class Structure:
    header: bool
    sections: int  # section labels found
    in_order: bool  # at least one, in the template's order, none repeated
    ended: bool
    distinct_3grams: float | None  # None: fewer than three tokens

    @property
    def is_posting(self) -> bool:
        return self.header and self.in_order and self.ended


def posting_part(text: str) -> str:
    """The part of a sample to judge: the [DOC] of a QA example, else the whole text."""
    start = text.find(DOC_START)
    if start < 0:
        return text
    body = text[start + len(DOC_START) :]
    end = body.find(DOC_END)
    return body if end < 0 else body[:end]


def section_order(text: str) -> list[int]:
    """The template index of each section label line of `text`, in the order they appear."""
    index = {f"{label}:": i for i, label in enumerate(SECTION_LABELS)}
    return [index[line.strip()] for line in text.splitlines() if line.strip() in index]


def distinct_3grams(ids: list[int]) -> float | None:
    grams = list(zip(ids, ids[1:], ids[2:], strict=False))
    return len(set(grams)) / len(grams) if grams else None


def judge(text: str, ended: bool, tok: Tokenizer) -> Structure:
    """How one sample measures against the template (see the module docstring)."""
    part = posting_part(text)
    lines = [line for line in part.splitlines() if line.strip()]
    order = section_order(part)
    in_order = bool(order) and all(a < b for a, b in zip(order, order[1:], strict=False))
    ids = tok.encode(text, add_special_tokens=False).ids
    return Structure(
        header=bool(lines) and is_header_line(lines[0]),
        sections=len(order),
        in_order=in_order,
        ended=ended,
        distinct_3grams=distinct_3grams(ids),
    )


def score_samples(gen: TextGenerator, n: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """Draw `n` samples (in batches of SAMPLE_BATCH, seeded `seed`, `seed + 16`...) and measure
    their structure: the share of each check and of samples that read as a posting, and the mean
    distinct-3-gram share."""
    start = time.perf_counter()
    completions = []
    for first in range(0, n, SAMPLE_BATCH):
        completions += gen.generate(
            "",
            num_samples=min(SAMPLE_BATCH, n - first),
            max_new_tokens=max_new_tokens,
            seed=seed + first,
        )
    judged = [judge(c.text, c.finish_reason == "stop", gen.tokenizer) for c in completions]
    ratios = [j.distinct_3grams for j in judged if j.distinct_3grams is not None]
    return {
        "samples": n,
        "seed": seed,
        "posting": _share(j.is_posting for j in judged),
        "header": _share(j.header for j in judged),
        "sections_in_order": _share(j.in_order for j in judged),
        "ended": _share(j.ended for j in judged),
        "distinct_3grams": sum(ratios) / len(ratios) if ratios else None,
        "mean_tokens": sum(c.n_tokens for c in completions) / max(n, 1),
        "seconds": time.perf_counter() - start,
        "per_sample": [asdict(j) | {"posting": j.is_posting} for j in judged],
        "first_sample": completions[0].text[:SHOWN_CHARS] if completions else "",
    }


def _share(flags: Any) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0
