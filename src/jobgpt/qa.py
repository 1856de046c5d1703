"""The reference question-answer format, and the special tokens: the ONE place that knows them.

A training example (see ``samples.txt`` of the reference pipeline) is three marked blocks,
separated by one blank line::

    [QUESTION]
    이 구인 정보를 요약해줘.
    [/QUESTION]

    [DOC]
    === [회사] 포지션 채용 ===
    ...
    [/DOC]

    [ANSWER]
    요약:
    - 회사: ...
    [/ANSWER]

The demo corpus writes it, the corpus reader splits files into these examples, the tokenizer makes
each marker one special token, and the generator builds its prompt with `build_qa_prompt` — so a
prompt is always a byte-exact prefix of what the model saw in training.
"""

from __future__ import annotations

from typing import NamedTuple

# The two control tokens of the token stream (the tokenizer makes each one special token).
EOT = "<|endoftext|>"  # ends every document in the token stream
PAD = "<|pad|>"  # fills ragged batches; never inside a document

QUESTION_START = "[QUESTION]"
QUESTION_END = "[/QUESTION]"
DOC_START = "[DOC]"
DOC_END = "[/DOC]"
ANSWER_START = "[ANSWER]"
ANSWER_END = "[/ANSWER]"

# In the order they appear in an example; the tokenizer turns each into one special token.
QA_MARKERS: tuple[str, ...] = (
    QUESTION_START,
    QUESTION_END,
    DOC_START,
    DOC_END,
    ANSWER_START,
    ANSWER_END,
)

# Between two blocks of one example (and between two examples in a corpus file).
BLOCK_SEPARATOR = "\n\n"


class QAExample(NamedTuple):
    question: str
    doc: str
    answer: str


def _block(start: str, body: str, end: str) -> str:
    return f"{start}\n{body.strip()}\n{end}"


def build_qa_prompt(question: str, doc: str) -> str:
    """The example up to and including ``[ANSWER]\\n``: the model continues with the answer.

    Fields are stripped of surrounding whitespace, as `format_qa_document` does, so a doc read from
    a file with a trailing newline still gives exactly the training-time prefix.
    """
    return (
        _block(QUESTION_START, question, QUESTION_END)
        + BLOCK_SEPARATOR
        + _block(DOC_START, doc, DOC_END)
        + BLOCK_SEPARATOR
        + f"{ANSWER_START}\n"
    )


def format_qa_document(question: str, doc: str, answer: str) -> str:
    """One training example, exactly as the reference corpus writes it (no trailing newline)."""
    return f"{build_qa_prompt(question, doc)}{answer.strip()}\n{ANSWER_END}"


def is_qa_format(text: str) -> bool:
    """True when ``text`` (a whole file or just its start) begins with a ``[QUESTION]`` block."""
    return text.lstrip("\ufeff \t\r\n").startswith(QUESTION_START)


def split_qa_blocks(text: str) -> list[str]:
    """Each ``[QUESTION]…[/ANSWER]`` example of ``text``, verbatim (``\\r\\n`` and all).

    Text outside examples is dropped. An example whose ``[/ANSWER]`` is missing is dropped too:
    when two ``[QUESTION]`` markers come before one ``[/ANSWER]``, the example starts at the
    later one, so one broken example never swallows the next.
    """
    blocks: list[str] = []
    pos = 0
    while (end := text.find(ANSWER_END, pos)) >= 0:
        start = text.rfind(QUESTION_START, pos, end)
        stop = end + len(ANSWER_END)
        if start >= 0:
            blocks.append(text[start:stop])
        pos = stop
    return blocks


def parse_qa_document(block: str) -> QAExample:
    """Split one example back into its question, doc and answer (each stripped).

    Raises ValueError naming the missing marker when ``block`` is not one complete example.
    """
    parts: list[str] = []
    pos = 0
    for start, end in (
        (QUESTION_START, QUESTION_END),
        (DOC_START, DOC_END),
        (ANSWER_START, ANSWER_END),
    ):
        i = block.find(start, pos)
        if i < 0:
            raise ValueError(f"missing {start} marker")
        j = block.find(end, i + len(start))
        if j < 0:
            raise ValueError(f"missing {end} marker")
        parts.append(block[i + len(start) : j].strip())
        pos = j + len(end)
    return QAExample(*parts)
