"""One Korean template for structured job postings: a JSON/CSV record -> document text.

`render_posting` lays a record out like the [DOC]s of the reference corpus (title line, summary
fields, sections, skills, contacts). It accepts the upper-case crawl schema (COMPANY, TITLE,
MAINDUTIES...) and board posts with a nested ``meta`` object; `record_text` prefers a record's own
``text`` field. The corpus reader (`jobgpt.corpus`) and the demo corpus (`jobgpt.demo_corpus`)
both use it, so demo documents and the user's JSON postings look alike to the model.
"""

from __future__ import annotations

from typing import Any

# (label, accepted keys). Keys match case-insensitively, so the upper-case crawl schema
# (COMPANY, MAINDUTIES...) and the lower-case board schema (company_name, responsibilities...)
# both work; the Korean label itself is accepted as a key too.
_SUMMARY_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("회사명", ("company", "company_name")),
    ("포지션", ("position", "title")),
    ("부서", ("department",)),
    ("업종", ("industry",)),
    ("직군 코드", ("job_group",)),
    ("위치", ("location", "working_area", "address")),
    ("고용형태", ("employment_type",)),
    ("급여", ("salary",)),
    ("경력", ("experience", "experience_level")),
    ("학력", ("education", "education_level")),
    ("근무시간", ("work_hours",)),
    ("근무요일", ("work_days",)),
    ("원격근무", ("remote_work",)),
    ("모집인원", ("hiring_count",)),
    ("입사일", ("start_date",)),
    ("마감일", ("deadline", "recruit_deadline")),
)
_SECTION_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("회사 소개", ("intro", "group_intro", "company_intro")),
    ("업무 내용", ("duties", "responsibilities", "mainduties", "main_duties")),
    ("자격 요건", ("requirements", "qualification", "qualifications")),
    ("우대 사항", ("preferred", "preferential")),
    ("복리후생", ("benefits",)),
    ("채용 절차", ("process", "hiring_process")),
    ("제출 서류", ("application_docs",)),
    ("지원 방법", ("how_to_apply", "apply_method")),
    ("상세 내용", ("content", "description")),
)
_SKILLS_FIELD = ("필요 기술", ("skills",))
_CONTACT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("담당자", ("contact_person",)),
    ("TEL", ("phone", "tel", "contact_phone")),
    ("EMAIL", ("email", "application_email")),
    ("WEB", ("web", "url", "application_url", "job_posting_url", "origin_source_url")),
)
# Values that mean "not given" in real crawls ("000" and "N/A" fill unknown contacts).
_PLACEHOLDERS = frozenset({"", "-", "000", "n/a", "na", "none", "null"})
_PLACEHOLDER_MAX_LEN = max(map(len, _PLACEHOLDERS))
# Posting fields that make a record worth a document on their own (a bare "content" or company
# name does not: without a title or duties it is rarely a posting).
_SUBSTANTIVE = ("포지션", "업무 내용", "자격 요건", "우대 사항", "회사 소개", "복리후생")
# The keys that make a record usable, listed from the tables above so the hint never goes stale.
RECORD_KEYS_HINT = (
    "give each record a non-empty 'text' field, or a job-posting key (any case, also inside a "
    "nested object such as 'meta'): "
    + ", ".join(
        key
        for label, keys in (*_SUMMARY_FIELDS, *_SECTION_FIELDS)
        if label in _SUBSTANTIVE
        for key in keys
    )
    + " (the crawl schema TITLE/MAINDUTIES/QUALIFICATION… and board posts with a 'meta' object "
    "both work); the formats table under 'Your own data' in README.md shows them"
)


def record_text(record: Any) -> str:
    """A record's document text: its ``text`` field, else `render_posting`; '' if neither."""
    if not isinstance(record, dict):
        return ""
    for key, value in record.items():
        if isinstance(key, str) and key.lower() == "text" and isinstance(value, str):
            if value.strip():
                return value.strip()
    return render_posting(record)


def render_posting(record: dict[str, Any]) -> str:
    """A structured job posting as Korean text, in the layout of the reference corpus's [DOC]s.

    Accepts the upper-case crawl schema (COMPANY, TITLE, GROUP_INTRO, MAINDUTIES, QUALIFICATION,
    PREFERENTIAL, BENEFITS, WORKING_AREA, RECRUIT_DEADLINE, JOB_GROUP, JOB_POSTING_URL) and the
    board schema (title, content, and a ``meta`` object with company_name, position, location,
    salary, deadline, responsibilities, requirements, skills...). Missing, null and placeholder
    fields are left out. Returns '' when the record has no posting field worth a document.
    """
    fields = _flatten(record)
    pick = {label: _first(fields, label, keys) for label, keys in _SUMMARY_FIELDS}
    pick["급여"] = _salary(fields)
    pick["경력"] = pick["경력"] or _years(fields)
    sections = {label: _first(fields, label, keys) for label, keys in _SECTION_FIELDS}
    if not any(pick.get(label) or sections.get(label) for label in _SUBSTANTIVE):
        return ""
    parts = [_header(_first(fields, "제목", ("title",)), pick["포지션"], pick["회사명"])]
    parts.append("\n".join(f"{label}: {value}" for label, value in pick.items() if value))
    parts += [f"{label}:\n{value}" for label, value in sections.items() if value]
    if skills := _first(fields, *_SKILLS_FIELD):
        parts.append(f"{_SKILLS_FIELD[0]}: {skills}")
    contacts: list[str] = []
    for label, keys in _CONTACT_FIELDS:
        if value := _first(fields, label, keys):
            contacts.append(f"{label}: {value}")
    parts.append("\n".join(contacts))
    return "\n\n".join(part for part in parts if part)


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lower-cased keys; a nested object (the board's ``meta``) is merged one level up."""
    flat = {str(k).lower(): v for k, v in record.items() if not isinstance(v, dict)}
    for value in record.values():
        if isinstance(value, dict):
            for k, v in value.items():
                flat.setdefault(str(k).lower(), v)
    return flat


def _first(fields: dict[str, Any], label: str, keys: tuple[str, ...]) -> str:
    """The first usable value among the label itself (Korean-keyed records) and its aliases."""
    for key in (label, *keys):  # fields' keys are lower-cased; so are the aliases
        value = fields.get(key)
        if value is not None and (value := _clean(value)):
            return value
    return ""


def _clean(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return ""
    if isinstance(value, list):
        return ", ".join(v for v in map(_clean, value) if v)
    text = str(value).strip()
    # Some crawls escape newlines twice, leaving a literal backslash-n; a field with no real
    # newline but literal "\n"s is one of those, and reading it as newlines restores the text.
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n").replace("\\t", "\t").strip()
    # Placeholders are short: checking the length first spares lower-casing every long field.
    return "" if len(text) <= _PLACEHOLDER_MAX_LEN and text.lower() in _PLACEHOLDERS else text


def _salary(fields: dict[str, Any]) -> str:
    salary = _first(fields, "급여", ("salary",))
    low, high = _clean(fields.get("min_salary")), _clean(fields.get("max_salary"))
    if not salary and (low or high):
        salary = f"{low} - {high}" if low and high else (low or high)
    currency = _clean(fields.get("salary_currency"))
    if salary and currency and currency not in salary:
        salary = f"{salary} ({currency})"
    return salary


def _years(fields: dict[str, Any]) -> str:
    years = _clean(fields.get("min_experience_years"))
    return f"{years}년 이상" if years else ""


def _header(title: str, position: str, company: str) -> str:
    title = title or position
    if not title:
        return f"=== {company} 채용 ===" if company else ""
    if company and not title.startswith("[") and company not in title:
        title = f"[{company}] {title}"
    return f"=== {title} ==="


# The template's labels in the order `render_posting` writes them, for code that reads a text
# against the template (`jobgpt.eval_gen`, `jobgpt.eval_qa`) without declaring them again.
SUMMARY_LABELS: tuple[str, ...] = tuple(label for label, _ in _SUMMARY_FIELDS)
SECTION_LABELS: tuple[str, ...] = tuple(label for label, _ in _SECTION_FIELDS)
SKILLS_LABEL: str = _SKILLS_FIELD[0]
CONTACT_LABELS: tuple[str, ...] = tuple(label for label, _ in _CONTACT_FIELDS)


def is_header_line(line: str) -> bool:
    """True for a title line shaped as `_header` writes it: ``=== [회사] 포지션 채용 ===``."""
    line = line.strip()
    return len(line) > 8 and line.startswith("=== ") and line.endswith(" ===")


__all__ = [
    "CONTACT_LABELS",
    "RECORD_KEYS_HINT",
    "SECTION_LABELS",
    "SKILLS_LABEL",
    "SUMMARY_LABELS",
    "is_header_line",
    "record_text",
    "render_posting",
]
