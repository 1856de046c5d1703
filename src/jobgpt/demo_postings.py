"""Drawing one synthetic Korean job posting, for the demo corpus (`jobgpt.demo_corpus`).

Each posting is drawn from the tables in ``jobgpt/data/demo_corpus.toml`` (roles, invented
companies, cities, pay, deadlines, benefits, contacts, title and intro wordings) and written out
by `posting_record` as a record for `jobgpt.postings.render_posting`, the template the corpus
reader uses for JSON postings.

The tables are data so that wording is edited without touching Python. They are TOML, not JSON,
because the file is edited by hand: TOML has comments (what each placeholder means, why an entry
is repeated) and is read by the stdlib `tomllib`. It is parsed once, on first use, so importing
this module stays cheap.

Everything is drawn from the caller's `random.Random`: the same seed and the same data file give
the same postings. The order of the draws below is part of that contract — reordering two `rng`
calls changes every corpus, which tests/test_demo_corpus.py would catch.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

_DATA_FILE = "demo_corpus.toml"  # under jobgpt/data/, shipped in the wheel with the code

# The question types `jobgpt.demo_corpus.build_answer` has a layout for; the data file may word
# them freely but cannot add one (an unknown type would silently get another type's layout).
INTENTS = ("summary", "key", "requirements", "contact", "checklist", "conditions")

# The experience lines that let a newcomer apply: drawn by `_experience`, read by the answers.
OPEN_TO_NEWCOMERS = ("신입", "신입/경력", "경력 무관")


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
    unknown = set(tables.questions) - set(INTENTS)
    if unknown:
        raise ValueError(f"{resource}: [questions] has types with no answer layout: {unknown}")
    return tables


def roles() -> tuple[Role, ...]:
    """The roles of the data file (read on first use, like every table)."""
    return _tables().roles


def questions() -> dict[str, tuple[str, ...]]:
    """Question type -> its wordings, in file order; every type is one of `INTENTS`."""
    return _tables().questions


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
    if kind < len(OPEN_TO_NEWCOMERS):
        return OPEN_TO_NEWCOMERS[kind], 0
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
# Writing it down: the record the DOC is rendered from (the ANSWER is `jobgpt.demo_corpus`'s)


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
