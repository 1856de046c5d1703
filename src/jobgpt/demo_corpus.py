"""The built-in demo corpus: synthetic Korean job postings in the reference training format.

So that `jobgpt tokenizer` works on a fresh clone with no data, the default input
(data/samples.txt) is written here when it is missing. Each example is a posting drawn by
`jobgpt.demo_postings`, rendered with the same template the corpus reader uses for JSON postings
(`jobgpt.postings.render_posting`), and wrapped as a `[QUESTION]/[DOC]/[ANSWER]` example whose
answer is derived from the posting's own fields — so a model trained on it learns to find and
copy fields, as on the real corpus.

Everything is drawn from one `random.Random(seed)`: the same seed and the same data file give the
same bytes. The order of the draws (the posting, then the question type, then its wording) is
part of that contract — changing it changes every corpus, which tests/test_demo_corpus.py would
catch.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from jobgpt.config import DEFAULT_CORPUS, DemoDataConfig
from jobgpt.demo_postings import (
    OPEN_TO_NEWCOMERS,
    Posting,
    draw_posting,
    posting_record,
    questions,
)
from jobgpt.errors import ConfigError
from jobgpt.files import atomic_open, sweep_temp_files
from jobgpt.postings import render_posting
from jobgpt.qa import BLOCK_SEPARATOR, format_qa_document

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The ANSWER, written from the same facts as the DOC


def _lines(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"  - ({i}) {item}" for i, item in enumerate(items, 1))


def _summary(p: Posting) -> str:
    facts = (
        ("회사", p.company),
        ("포지션", p.position),
        ("위치", p.location),
        ("고용형태", p.employment),
        ("급여", p.salary),
        ("마감일", p.deadline),
    )
    return "요약:\n" + _lines([f"{k}: {v}" for k, v in facts])


def _contact_block(p: Posting) -> str:
    return "연락처(공공정보):\n" + _lines([f"{k}: {v}" for k, v in p.contacts.items()])


def _checklist(p: Posting) -> str:
    todo = [
        "이력서 준비",
        f"지원 방법: {p.how_to_apply}",
        f"필요 기술 확인 ({', '.join(p.skills)})",
    ]
    caution = (
        [f"마감일({p.deadline}) 확인 필수"]
        if p.deadline[0].isdigit()
        else [f"{p.deadline}: 조기 마감될 수 있으니 빨리 지원"]
    )
    caution.append("자격 요건 충족 여부 확인")
    return (
        f"체크리스트:\n- 해야 할 일:\n{_numbered(todo)}\n- 준비물:\n{_numbered(p.documents)}"
        f"\n- 주의사항:\n{_numbered(caution)}"
    )


def _newcomer_line(p: Posting) -> str:
    if p.experience in OPEN_TO_NEWCOMERS:
        return f"네, 신입도 지원할 수 있습니다 (경력: {p.experience})."
    return f"아니요, 이 포지션은 {p.experience} 조건입니다."


def build_answer(intent: str, question: str, p: Posting) -> str:
    """The answer to one question type, using only facts written in the posting."""
    if intent == "summary":
        return f"{_summary(p)}\n\n주요 업무: {', '.join(p.duties)}"
    if intent == "key":
        detail = (
            f"상세 설명:\n이 문서는 {p.company}의 {p.position} 채용 공고입니다.\n"
            f"주요 업무: {', '.join(p.duties)}\n자격 요건: {', '.join(p.requirements)}\n"
            "연락처 정보는 변경될 수 있으므로 공식 웹사이트에서 최신 정보를 확인하는 것이 좋습니다."
        )
        return "\n\n".join((_summary(p), _checklist(p), _contact_block(p), detail))
    if intent == "requirements":
        head = _newcomer_line(p) + "\n\n" if "신입" in question else ""
        return (
            f"{head}지원 자격:\n"
            + _lines([f"경력: {p.experience}", f"학력: {p.education}", *p.requirements])
            + f"\n\n우대 사항:\n{_lines(p.preferred)}\n\n필요 기술: {', '.join(p.skills)}"
        )
    if intent == "contact":
        return (
            f"{_contact_block(p)}\n\n지원 방법: {p.how_to_apply}\n마감일: {p.deadline}\n\n"
            "주의사항: 연락처 정보는 변경될 수 있으니 공식 채용 페이지에서 최신 정보를 확인하세요."
        )
    if intent == "checklist":
        return f"{_checklist(p)}\n\n채용 절차: {p.role.process}"
    conditions = (
        ("위치", p.location),
        ("고용형태", p.employment),
        ("급여", p.salary),
        ("근무시간", p.hours),
    )
    return (
        f"근무 조건:\n{_lines([f'{k}: {v}' for k, v in conditions])}\n\n"
        f"복리후생:\n{_lines(p.benefits)}"
    )


# ---------------------------------------------------------------------------------------------
# The corpus


def generate_demo_corpus(n: int, seed: int) -> Iterator[str]:
    """``n`` distinct QA-format examples, the same for the same seed (a prefix for a smaller n)."""
    rng = random.Random(seed)
    wordings = questions()
    seen: set[str] = set()
    while len(seen) < n:
        posting = draw_posting(rng)
        intent = rng.choice(tuple(wordings))
        question = rng.choice(wordings[intent])
        text = format_qa_document(
            question,
            render_posting(posting_record(posting)),
            build_answer(intent, question, posting),
        )
        if text not in seen:  # collisions are near-impossible; this makes them impossible
            seen.add(text)
            yield text


def write_demo_corpus(path: str | os.PathLike[str], n: int, seed: int) -> Path:
    """Write ``n`` examples to ``path`` atomically (a crash never leaves half a corpus), after
    sweeping the temp files that killed writers left beside it."""
    if Path(path).parent.is_dir():
        sweep_temp_files(Path(path).parent)
    with atomic_open(path, "w") as f:
        for text in generate_demo_corpus(n, seed):
            f.write(text + BLOCK_SEPARATOR)
    return Path(path)


def run_demo_data(cfg: DemoDataConfig) -> Path:
    """`jobgpt demo-data`: write the synthetic corpus to ``cfg.out``."""
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise ConfigError(
            f"{out} already exists (it may be your own corpus)",
            "pass --overwrite to replace it, or --out to write somewhere else",
        )
    write_demo_corpus(out, cfg.n, cfg.seed)
    size = out.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"
    print(f"wrote {cfg.n:,} synthetic postings ({shown}) to {out}")
    return out


def ensure_default_corpus(patterns: Sequence[str]) -> None:
    """Write the demo corpus to data/samples.txt if that default input is asked for and missing.

    Only the untouched default triggers this: a path the user typed that does not exist must stay
    an error, never be silently replaced by synthetic data.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if [Path(p) for p in patterns] != [Path(DEFAULT_CORPUS)] or Path(DEFAULT_CORPUS).exists():
        return
    cfg = DemoDataConfig()
    write_demo_corpus(DEFAULT_CORPUS, cfg.n, cfg.seed)
    logger.info(
        "%s not found: wrote the built-in demo corpus there (%s synthetic Korean postings, "
        "seed %d); pass --input to use your own text",
        DEFAULT_CORPUS,
        f"{cfg.n:,}",
        cfg.seed,
    )
