"""The built-in demo corpus: synthetic Korean job postings in the reference training format.

So that `jobgpt tokenizer` works on a fresh clone with no data, the default input
(data/samples.txt) is written here when it is missing. Each posting is drawn from the tables in
``jobgpt/data/demo_corpus.toml`` (roles, invented companies, cities, pay, deadlines, benefits,
contacts, title and intro wordings), rendered with the same template the corpus reader uses for
JSON postings (`jobgpt.postings.render_posting`), and wrapped as a `[QUESTION]/[DOC]/[ANSWER]`
example whose answer is derived from the posting's own fields — so a model trained on it learns
to find and copy fields, as on the real corpus.

The tables are data so that wording is edited without touching Python. They are TOML, not JSON,
because the file is edited by hand: TOML has comments (what each placeholder means, why an entry
is repeated) and is read by the stdlib `tomllib`. It is parsed once, on first use, so importing
this module stays cheap.

Everything is drawn from one `random.Random(seed)`: the same seed and the same data file give the
same bytes. The order of the draws below is part of that contract — reordering two `rng` calls
changes every corpus, which tests/test_demo_corpus.py would catch.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jobgpt.config import DEFAULT_CORPUS, DemoDataConfig
from jobgpt.errors import ConfigError
from jobgpt.files import atomic_open
from jobgpt.postings import render_posting
from jobgpt.qa import BLOCK_SEPARATOR, format_qa_document

logger = logging.getLogger(__name__)

_DATA_FILE = "demo_corpus.toml"  # under jobgpt/data/, shipped in the wheel with the code

# The question types `build_answer` has a layout for; the data file may word them freely but
# cannot add one (an unknown type would silently get another type's layout).
_INTENTS = ("summary", "key", "requirements", "contact", "checklist", "conditions")

# The experience lines that let a newcomer apply: drawn by `_experience`, read by the answers.
_OPEN_TO_NEWCOMERS = ("신입", "신입/경력", "경력 무관")


@dataclass(frozen=True)
class Role:
    """One kind of job, with the pools its postings draw from (see the data file's [[roles]])."""

    area: str  # the field, as written in "… 분야 경력 3년 이상"
    industry: str
    positions: tuple[str, ...]
    departments: tuple[str, ...]
    business: tuple[str, ...]  # what a company hiring for it does: "…하는 기업입니다"
    suffixes: tuple[tuple[str, str], ...]  # company-name endings, (Korean, romanised)
    duties: tuple[str, ...]
    requirements: tuple[str, ...]
    preferred: tuple[str, ...]
    skills: tuple[str, ...]
    documents: tuple[str, ...]  # what to submit besides a résumé
    hours: tuple[str, ...]
    perks: tuple[str, ...]  # benefits typical of the field, added to the common pool
    salary: int  # a newcomer's yearly pay, in 만원
    process: str
    forms: tuple[str, ...]  # how the company name is written: "(주){name}"
    noun: str  # what the intro calls the company: "기업", "의료기관"


@dataclass(frozen=True)
class _Tables:
    """The data file, parsed; one field per top-level table (the file documents each)."""

    roles: tuple[Role, ...]
    questions: dict[str, tuple[str, ...]]  # question type -> wordings, in file order
    company_prefixes: tuple[tuple[str, str], ...]  # (Korean, romanised)
    domain_endings: tuple[str, ...]
    places: tuple[tuple[str, str, tuple[str, ...]], ...]  # (place, area code, streets)
    address_endings: tuple[str, ...]
    employment: tuple[str, ...]
    education: tuple[str, ...]
    benefits: tuple[str, ...]
    hiring_counts: tuple[str, ...]
    bullets: tuple[str, ...]
    title_formats: tuple[str, ...]
    intro_opening: str
    funding_rounds: tuple[str, ...]
    intro_facts: tuple[str, ...]
    intro_closings: tuple[str, ...]
    salary_formats: tuple[str, ...]
    salary_negotiable: tuple[str, ...]
    open_deadlines: tuple[str, ...]
    weekdays: tuple[str, ...]
    surnames: tuple[str, ...]
    given_names: tuple[str, ...]
    staff_titles: tuple[str, ...]
    mail_users: tuple[str, ...]
    careers_urls: tuple[str, ...]


def _freeze(value: Any) -> Any:
    """Lists -> tuples, all the way down, so no draw can mutate a pool shared by every posting."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _role(fields: dict[str, Any], defaults: dict[str, Any], bases: dict[str, Any]) -> Role:
    """A role takes the defaults, then its base's fields (e.g. the shared IT ones), then its own."""
    own = dict(fields)
    base = bases[own.pop("base")] if "base" in own else {}
    return Role(**{**defaults, **base, **own})


@functools.cache
def _tables() -> _Tables:
    """Read and check the data file, once (the first posting drawn pays for it, not the import)."""
    import tomllib  # imported here, like the file is read here: only drawing needs them
    from importlib import resources

    resource = resources.files("jobgpt") / "data" / _DATA_FILE
    try:
        data = _freeze(tomllib.loads(resource.read_text(encoding="utf-8")))
        defaults, bases = data.pop("role_defaults"), data.pop("role_bases")
        roles = tuple(_role(fields, defaults, bases) for fields in data.pop("roles"))
        places = tuple((p["place"], p["area_code"], p["streets"]) for p in data.pop("places"))
        tables = _Tables(roles=roles, places=places, **data)
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as e:
        e.add_note(f"while reading the demo corpus tables from {resource}")
        raise
    unknown = set(tables.questions) - set(_INTENTS)
    if unknown:
        raise ValueError(f"{resource}: [questions] has types with no answer layout: {unknown}")
    return tables


def __getattr__(name: str) -> Any:
    """`ROLES` and `QUESTIONS` stay importable, but are read from the data file on first use."""
    if name == "ROLES":
        return _tables().roles
    if name == "QUESTIONS":
        return _tables().questions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Drawing one posting


@dataclass
class Posting:
    """The drawn facts of one posting; the DOC and the ANSWER are both written from these."""

    role: Role
    company: str
    title: str
    position: str
    department: str
    intro: str
    location: str
    employment: str
    salary: str
    experience: str
    education: str
    hours: str
    deadline: str
    duties: list[str]
    requirements: list[str]
    preferred: list[str]
    skills: list[str]
    benefits: list[str]
    documents: list[str]
    contacts: dict[str, str]  # label -> value, in TEL/EMAIL/WEB order
    how_to_apply: str
    hiring_count: str
    bullet: str


def draw_posting(rng: random.Random) -> Posting:
    """One posting's facts. The order of the draws is the corpus: keep it when editing."""
    t = _tables()
    role = rng.choice(t.roles)
    (prefix, prefix_en), (suffix, suffix_en) = (
        rng.choice(t.company_prefixes),
        rng.choice(role.suffixes),
    )
    name = prefix + suffix
    company = rng.choice(role.forms).format(name=name)
    domain = f"{prefix_en}{suffix_en}.{rng.choice(t.domain_endings)}"
    position = rng.choice(role.positions)
    employment = rng.choice(t.employment)
    experience, years = ("신입", 0) if employment.startswith("인턴") else _experience(rng)
    place, area_code, streets = rng.choice(t.places)
    requirements = _pick(rng, role.requirements, 2, 4)
    if years:
        requirements.insert(0, f"{role.area} 분야 경력 {years}년 이상")
    contacts = _contacts(rng, domain, area_code)
    return Posting(  # the keyword arguments are evaluated, and so drawn, in this order
        role=role,
        company=company,
        position=position,
        title=_title(rng, company, position, experience, place),
        department=rng.choice(role.departments),
        intro=_intro(rng, name, role),
        location=_location(rng, place, streets, prefix),
        employment=employment,
        salary=_salary(rng, role, years),
        experience=experience,
        education=rng.choice(t.education),
        hours=rng.choice(role.hours),
        deadline=_deadline(rng),
        duties=_pick(rng, role.duties, 3, 5),
        requirements=requirements,
        preferred=_pick(rng, role.preferred, 2, 3),
        skills=_pick(rng, role.skills, 2, 5),
        benefits=_pick(rng, t.benefits + role.perks, 4, 7),
        documents=["이력서", *_pick(rng, role.documents, 1, len(role.documents))],
        contacts=contacts,
        how_to_apply=_how_to_apply(rng, contacts),
        hiring_count=rng.choice(t.hiring_counts),
        bullet=rng.choice(t.bullets),
    )


def _pick(rng: random.Random, pool: Sequence[str], lo: int, hi: int) -> list[str]:
    """A few distinct items, kept in the pool's order so lists read naturally."""
    chosen = set(rng.sample(range(len(pool)), rng.randint(lo, min(hi, len(pool)))))
    return [item for i, item in enumerate(pool) if i in chosen]


def _experience(rng: random.Random) -> tuple[str, int]:
    """The experience line and the years it asks for (0: newcomers may apply)."""
    kind = rng.randrange(5)
    if kind < len(_OPEN_TO_NEWCOMERS):
        return _OPEN_TO_NEWCOMERS[kind], 0
    years = rng.choice((1, 2, 3, 3, 5, 5, 7, 10))
    if kind == 3:
        return f"경력 {years}년 이상", years
    return f"경력 {years}~{years + rng.choice((3, 5))}년", years


def _location(rng: random.Random, place: str, streets: Sequence[str], prefix: str) -> str:
    street, number = rng.choice(streets), rng.randint(1, 400)
    # Both floors are drawn whichever ending is chosen: the draw order must not depend on it.
    floor, storey = rng.randint(2, 20), rng.randint(2, 12)
    ending = rng.choice(_tables().address_endings)
    return f"{place} {street} {number}" + ending.format(floor=floor, prefix=prefix, storey=storey)


def _salary(rng: random.Random, role: Role, years: int) -> str:
    """Pay grows with the years asked for; the wording is one of the data file's formats."""
    t = _tables()
    lo = round((role.salary + years * rng.randint(150, 400)) / 100) * 100
    hi = lo + rng.choice((600, 1000, 1500, 2000))
    fmt = rng.choice(t.salary_formats)
    if fmt == "{negotiable}":
        return rng.choice(t.salary_negotiable)
    return fmt.format(lo=lo, hi=hi, monthly=round(lo / 12 / 10) * 10)


def _deadline(rng: random.Random) -> str:
    t = _tables()
    if rng.random() < 0.2:
        return rng.choice(t.open_deadlines)
    day = date(2025, 1, 6) + timedelta(days=rng.randrange(540))
    if rng.random() < 0.5:
        return day.isoformat()
    return f"{day.year}년 {day.month}월 {day.day}일({t.weekdays[day.weekday()]}) 23:59"


def _title(rng: random.Random, company: str, position: str, experience: str, place: str) -> str:
    return rng.choice(_tables().title_formats).format(
        company=company, position=position, experience=experience, city=place.split()[0]
    )


def _intro(rng: random.Random, name: str, role: Role) -> str:
    t = _tables()
    topic = "은" if (ord(name[-1]) - 0xAC00) % 28 else "는"  # 받침 decides the particle
    founded, business = rng.randint(1995, 2022), rng.choice(role.business)
    series = rng.choice(t.funding_rounds)
    # Every fact's number is drawn whichever fact is chosen: the draw order must not depend on it.
    staff, revenue = rng.randint(12, 900), rng.randint(30, 2000)
    sentences = (
        t.intro_opening.format(
            name=name, topic=topic, founded=founded, business=business, noun=role.noun
        ),
        rng.choice(t.intro_facts).format(staff=staff, series=series, revenue=revenue),
        rng.choice(t.intro_closings).format(area=role.area),
    )
    return " ".join(s for s in sentences if s)


def _contacts(rng: random.Random, domain: str, area_code: str) -> dict[str, str]:
    t = _tables()
    contacts: dict[str, str] = {}
    if rng.random() < 0.5:
        staff = rng.choice(t.surnames) + rng.choice(t.given_names)
        contacts["담당자"] = f"인사팀 {staff} {rng.choice(t.staff_titles)}"
    if rng.random() < 0.6:
        middle = rng.randint(1000, 9999) if area_code == "02" else rng.randint(200, 999)
        contacts["TEL"] = f"{area_code}-{middle}-{rng.randint(1000, 9999)}"
    web = rng.random() < 0.7
    if not web or rng.random() < 0.5:
        contacts["EMAIL"] = f"{rng.choice(t.mail_users)}@{domain}"
    if web:
        number = rng.randint(100, 9999)  # drawn whichever page is chosen, as for the intro
        contacts["WEB"] = rng.choice(t.careers_urls).format(domain=domain, number=number)
    return contacts


def _how_to_apply(rng: random.Random, contacts: dict[str, str]) -> str:
    if "WEB" in contacts and ("EMAIL" not in contacts or rng.random() < 0.5):
        return f"채용 홈페이지({contacts['WEB']})에서 온라인 지원"
    return f"이메일 지원 ({contacts['EMAIL']}), 제목에 '지원 포지션_이름' 기재"


# ---------------------------------------------------------------------------------------------
# Writing it down: the DOC through the shared template, the ANSWER from the same facts


def posting_record(p: Posting) -> dict[str, str]:
    """The posting as a record for `render_posting` (so the DOC has the corpus reader's layout)."""

    def bullets(items: list[str]) -> str:
        return "\n".join(p.bullet + item for item in items)

    return {
        "title": p.title,
        "company": p.company,
        "position": p.position,
        "department": p.department,
        "industry": p.role.industry,
        "location": p.location,
        "employment_type": p.employment,
        "salary": p.salary,
        "experience": p.experience,
        "education": p.education,
        "work_hours": p.hours,
        "hiring_count": p.hiring_count,
        "deadline": p.deadline,
        "intro": p.intro,
        "duties": bullets(p.duties),
        "requirements": bullets(p.requirements),
        "preferred": bullets(p.preferred),
        "benefits": bullets(p.benefits),
        "process": p.role.process,
        "application_docs": ", ".join(p.documents),
        "how_to_apply": p.how_to_apply,
        "skills": ", ".join(p.skills),
        "contact_person": p.contacts.get("담당자", ""),
        "phone": p.contacts.get("TEL", ""),
        "email": p.contacts.get("EMAIL", ""),
        "url": p.contacts.get("WEB", ""),
    }


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
    if p.experience in _OPEN_TO_NEWCOMERS:
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


def generate_demo_corpus(n: int, seed: int) -> Iterator[str]:
    """``n`` distinct QA-format examples, the same for the same seed (a prefix for a smaller n)."""
    rng = random.Random(seed)
    questions = _tables().questions
    seen: set[str] = set()
    while len(seen) < n:
        posting = draw_posting(rng)
        intent = rng.choice(tuple(questions))
        question = rng.choice(questions[intent])
        text = format_qa_document(
            question,
            render_posting(posting_record(posting)),
            build_answer(intent, question, posting),
        )
        if text not in seen:  # collisions are near-impossible; this makes them impossible
            seen.add(text)
            yield text


def write_demo_corpus(path: str | os.PathLike[str], n: int, seed: int) -> Path:
    """Write ``n`` examples to ``path`` atomically (a crash never leaves half a corpus)."""
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
