"""Question-answer faithfulness: does a greedy answer state the posting's own facts?

Examples come from QA-format files (question, posting and a reference answer) or from structured
postings (JSON/JSONL/CSV, rendered as the data stages render them), which are asked the default
summary question (`jobgpt.generate.DEFAULT_QUESTION`) and have no reference answer. The prompt is
built as `jobgpt generate --doc-file` builds it, and the answer decoded greedily.

Each field of `FIELDS` that an answer states as a ``- 라벨: 값`` line is scored against the posting
(values compared with their whitespace collapsed):

- correct: the value equals the posting's value for the field;
- hallucinated: the value appears nowhere in the posting;
- wrong: not equal, but found elsewhere in the posting (another field's value, a part of one);
- missing: the reference answer (without one: the posting) has the field, the answer does not.

An answer is well-formed when it ended with ``[/ANSWER]`` and states every field the reference
answer states. `score_answer` needs no model, so the rules are tested on hand-written answers.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jobgpt.config import GenerateConfig
from jobgpt.corpus import iter_documents
from jobgpt.generate import DEFAULT_QUESTION, build_prompt
from jobgpt.generator import TextGenerator
from jobgpt.progress import Progress
from jobgpt.qa import ANSWER_END, QAExample, is_qa_format, parse_qa_document
from jobgpt.sampling import generate_tokens


@dataclass(frozen=True)
class Field:
    key: str  # the English name in reports and JSON
    answer_label: str  # how an answer labels it: "- 회사: …"
    doc_label: str  # how the posting template labels it (`jobgpt.postings`): "회사명: …"


# The one field table: the answer's summary lines, then its contact lines. The document labels
# are the template's (tests/test_eval.py checks them against jobgpt.postings).
FIELDS: tuple[Field, ...] = (
    Field("company", "회사", "회사명"),
    Field("position", "포지션", "포지션"),
    Field("location", "위치", "위치"),
    Field("employment", "고용형태", "고용형태"),
    Field("salary", "급여", "급여"),
    Field("deadline", "마감일", "마감일"),
    Field("email", "EMAIL", "EMAIL"),
    Field("phone", "TEL", "TEL"),
)
OUTCOMES = ("correct", "wrong", "hallucinated", "missing")


def _pattern(label: str) -> re.Pattern[str]:
    """A line `label: value`, optionally as a list item (`- label: value`)."""
    return re.compile(rf"^[ \t]*(?:-[ \t]*)?{re.escape(label)}[ \t]*:[ \t]*(\S.*?)[ \t]*$", re.M)


_ANSWER_LINES = {f.key: _pattern(f.answer_label) for f in FIELDS}
_DOC_LINES = {f.key: _pattern(f.doc_label) for f in FIELDS}


def normalise(text: str) -> str:
    """Whitespace runs as one space, none at the ends: line breaks and spacing are no facts."""
    return " ".join(text.split())


def field_values(text: str, lines: dict[str, re.Pattern[str]]) -> dict[str, str]:
    """key -> the first value `text` states for each field it states."""
    found = {key: pattern.search(text) for key, pattern in lines.items()}
    return {key: normalise(m.group(1)) for key, m in found.items() if m}


def answer_fields(answer: str) -> dict[str, str]:
    return field_values(answer, _ANSWER_LINES)


def doc_fields(doc: str) -> dict[str, str]:
    return field_values(doc, _DOC_LINES)


def score_answer(answer: str, doc: str, reference: str | None) -> dict[str, str]:
    """key -> outcome (one of OUTCOMES) for every field the answer states or should state.

    Fields the answer leaves out and nothing expects are not scored.
    """
    said, facts = answer_fields(answer), doc_fields(doc)
    expected = answer_fields(reference) if reference is not None else facts
    whole_doc = normalise(doc)
    outcomes: dict[str, str] = {}
    for field in FIELDS:
        value = said.get(field.key)
        if value is None:
            if field.key in expected:
                outcomes[field.key] = "missing"
        elif value == facts.get(field.key):
            outcomes[field.key] = "correct"
        else:
            outcomes[field.key] = "wrong" if value in whole_doc else "hallucinated"
    return outcomes


def well_formed(answer: str, ended: bool, reference: str | None) -> bool:
    """Ended with [/ANSWER], and states every field the reference answer states."""
    if not ended:
        return False
    return reference is None or set(answer_fields(reference)) <= set(answer_fields(answer))


# --- running a model on examples -----------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    question: str
    doc: str
    reference: str | None  # the reference answer; None for a structured posting
    source: str  # "path:line", for the report


def read_examples(patterns: Sequence[str], limit: int) -> Iterator[Example]:
    """The first `limit` examples of the files, read as the data stages read them: a QA example
    as its question, posting and answer; any other document as a posting asked for a summary."""
    count = 0
    for doc in iter_documents(patterns):
        if count == limit:
            return
        if is_qa_format(doc.text):
            qa: QAExample = parse_qa_document(doc.text)
            yield Example(qa.question, qa.doc, qa.answer, doc.source)
        else:
            yield Example(DEFAULT_QUESTION, doc.text, None, doc.source)
        count += 1


def greedy_answer(gen: TextGenerator, example: Example, max_new_tokens: int) -> tuple[str, bool]:
    """(the greedy answer, whether it ended with [/ANSWER]) to the prompt `jobgpt generate
    --doc-file` builds. Decoded from the token ids here, not through `TextGenerator.stream`:
    its pieces do not say which stop token ended a sample, and only [/ANSWER] ends an answer
    properly (<|endoftext|> right after the answer skips the marker)."""
    cfg = GenerateConfig(
        question=example.question,
        doc_file=example.source,
        max_new_tokens=max_new_tokens,
        temperature=0,
    )
    prompt = gen.prepare(build_prompt(cfg, gen, example.doc)[0])
    ids: list[int] = []
    for step in generate_tokens(
        gen.model,
        [prompt.ids],
        max_new_tokens,
        temperature=0,
        stop_ids=gen.stop_ids,
        first_allowed=prompt.first_allowed,
    ):
        ids.append(int(step[0]))
    stop = ids.pop() if ids and ids[-1] in gen.stop_ids else None
    text = gen.tokenizer.decode(ids, skip_special_tokens=False)
    text = text.removeprefix(prompt.healed)  # the healed prompt text is not part of the answer
    return text, stop is not None and stop == gen.tokenizer.token_to_id(ANSWER_END)


def score_examples(
    gen: TextGenerator, patterns: Sequence[str], max_qa: int, max_new_tokens: int
) -> dict[str, Any]:
    """Answer up to `max_qa` examples greedily and score them: per field and overall counts and
    shares of the scored fields, the share of well-formed answers, and each example's outcomes."""
    per_example: list[dict[str, Any]] = []
    start = time.perf_counter()
    with Progress("answering questions", unit="answers") as progress:
        for example in read_examples(patterns, max_qa):
            answer, ended = greedy_answer(gen, example, max_new_tokens)
            per_example.append(
                {
                    "source": example.source,
                    "has_reference": example.reference is not None,
                    "well_formed": well_formed(answer, ended, example.reference),
                    "fields": score_answer(answer, example.doc, example.reference),
                    "answer": answer,
                }
            )
            progress.update(1)
    return {
        "inputs": list(patterns),
        **summarise(per_example),
        "seconds": time.perf_counter() - start,
        "examples": per_example,
    }


def summarise(per_example: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and shares per field and overall; a share is of the fields scored."""
    by_field = {f.key: Counter(e["fields"].get(f.key) for e in per_example) for f in FIELDS}
    overall = sum((Counter({o: c[o] for o in OUTCOMES}) for c in by_field.values()), Counter())
    answers = len(per_example)
    return {
        "answers": answers,
        "with_reference": sum(e["has_reference"] for e in per_example),
        "well_formed": sum(e["well_formed"] for e in per_example) / max(answers, 1),
        "fields": {key: _shares(counts) for key, counts in by_field.items()},
        "overall": _shares(overall),
    }


def _shares(counts: Counter) -> dict[str, Any]:
    scored = sum(counts[o] for o in OUTCOMES)
    return {
        "scored": scored,
        **{o: counts[o] for o in OUTCOMES},
        **{f"{o}_share": counts[o] / scored if scored else None for o in OUTCOMES},
    }
