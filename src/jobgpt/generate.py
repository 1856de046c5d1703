"""Stage 4: sample job-posting text from a checkpoint (`jobgpt generate`, scripts/generate.py).

Plain mode continues `--prompt`; question-answer mode (`--doc-file`, `--question`) builds the
reference `[QUESTION]/[DOC]/[ANSWER]` prompt and prints the answer. The samples of one call run
as one batch through `jobgpt.generator.TextGenerator`; `SamplePrinter` streams the front one to
stdout while the others wait their turn, and everything that is not generated text (headers,
the echoed prompt, timing) goes to stderr.
"""

from __future__ import annotations

import codecs
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from jobgpt.config import DEFAULT_NUM_SAMPLES, GenerateConfig
from jobgpt.errors import InputError, JobGPTError
from jobgpt.generator import DOC_CUT, Completion, Piece, TextGenerator
from jobgpt.postings import record_text
from jobgpt.textfile import read_all_text
from jobgpt.threads import ThreadPolicy

logger = logging.getLogger(__name__)

# The reference corpus's question; --doc-file without --question asks it.
DEFAULT_QUESTION = "이 구인 정보를 요약해줘."
# A --doc-file larger than this is read only at its start and end: a prompt fits a few thousand
# characters at most, and a 50 MB file must not cost 50 MB (plus its tokens) of memory.
MAX_DOC_BYTES = 1 << 20


# --- the CLI stage ------------------------------------------------------------------------------


def run(cfg: GenerateConfig) -> list[Completion]:
    """`jobgpt generate`: print samples (or a QA answer) to stdout; logs go to stderr."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): nowhere to print the text
        raise JobGPTError(
            "standard output is closed, so there is nowhere to print the generated text",
            "run it with stdout open, or redirect it to a file (> samples.txt)",
        )
    doc = read_doc(cfg.doc_file) if cfg.doc_file is not None else None
    gen = TextGenerator.from_checkpoint(cfg.checkpoint, cfg.device)
    prompt, echo = build_prompt(cfg, gen, doc)
    num_samples = samples_to_draw(cfg)
    printer = SamplePrinter(num_samples, cfg.stream, echo=echo)
    # --threads N pins; 0 measures. The choice is told in the summary below, not mid-stream.
    threads = ThreadPolicy.for_decoding(cfg.threads, gen.device, log_level=logging.DEBUG)
    start = time.perf_counter()
    ends: list[Piece] = []
    for piece in gen.stream(
        prompt,
        num_samples=num_samples,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        repetition_penalty=cfg.repetition_penalty,
        stop=cfg.stop,
        seed=cfg.seed,
        threads=threads,
    ):
        printer.feed(piece)
        if piece.finish_reason:
            ends.append(piece)
    seconds = time.perf_counter() - start
    tokens = sum(p.n_tokens for p in ends)
    logger.info(
        "%d sample(s), %d tokens in %.1fs (%.0f tokens/s) on %s; threads: %s",
        num_samples,
        tokens,
        seconds,
        tokens / max(seconds, 1e-9),
        gen.device,
        threads.describe(),
    )
    ends.sort(key=lambda p: p.row)
    return [
        Completion(text, p.finish_reason or "", p.n_tokens)
        for text, p in zip(printer.texts, ends, strict=True)
    ]


def samples_to_draw(cfg: GenerateConfig) -> int:
    """`cfg.samples`, saying why when greedy decoding (deterministic: every sample would be the
    same text) draws one, and warning when a typed --num-samples asks for identical copies
    (obeyed: the user may be timing a batch)."""
    if cfg.temperature == 0 and cfg.num_samples is None:
        logger.info(
            "temperature 0 is greedy decoding, which is deterministic: printing 1 sample, not "
            "%d identical ones (pass --num-samples to draw them anyway)",
            DEFAULT_NUM_SAMPLES,
        )
    elif cfg.temperature == 0 and cfg.samples > 1:
        logger.warning(
            "temperature 0 is greedy decoding, which is deterministic: all %d samples will be "
            "identical",
            cfg.samples,
        )
    return cfg.samples


def build_prompt(cfg: GenerateConfig, gen: TextGenerator, doc: str | None) -> tuple[str, str]:
    """(prompt text, text to echo on stderr before each sample): `--prompt`, or the
    question-answer prompt about `doc` (the posting read from --doc-file)."""
    if doc is None:
        return cfg.prompt, cfg.prompt
    question = cfg.question
    if question is None or not question.strip():
        logger.info("no --question given: asking %r", DEFAULT_QUESTION)
        question = DEFAULT_QUESTION
    answer_room = min(cfg.max_new_tokens, gen.model.config.block_size // 8)
    return gen.qa_prompt(question, doc, answer_room), ""


def read_doc(path_str: str) -> str:
    """A posting for question-answer mode: a .txt file as is, or a .json posting rendered.

    Only what a prompt can use is read: of a text file over MAX_DOC_BYTES, its start and its
    end (a posting's header and how to apply), so a 50 MB file costs no more than 1 MB.
    """
    path = Path(path_str)
    if path.is_dir():
        raise InputError(
            f"doc file {path} is a directory", "pass one posting saved as .txt or .json"
        )
    if not path.is_file():
        raise InputError(f"doc file {path} does not exist", "pass a posting saved as .txt or .json")
    size = path.stat().st_size
    is_json = path.suffix.lower() == ".json"
    if is_json and size > MAX_DOC_BYTES:
        raise InputError(
            f"doc file {path} is {size / 1e6:.1f} MB, too big for one posting",
            "save the single posting to ask about as its own .json file",
        )
    try:
        raw = read_all_text(path) if size <= MAX_DOC_BYTES else _head_and_tail(path, size)
    except UnicodeDecodeError as err:
        raise InputError(f"doc file {path} is not UTF-8 text ({err})", "save it as UTF-8") from None
    text = record_text(_one_record(raw, path)) if is_json else raw
    if not text.strip():
        raise InputError(
            f"doc file {path} has no posting text",
            "put the job posting in it (text, or JSON with title/content/... fields)",
        )
    return text


def _head_and_tail(path: Path, size: int) -> str:
    """The first and last MAX_DOC_BYTES / 2 of a long text file, cut at whole characters and
    joined by the prompt's DOC_CUT marker."""
    half = MAX_DOC_BYTES // 2
    with open(path, "rb") as f:
        head = f.read(half)
        f.seek(size - half)
        tail = f.read(half)
    head_text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    tail = tail[next((i for i, b in enumerate(tail[:4]) if b & 0xC0 != 0x80), 0) :]
    return head_text + DOC_CUT + tail.decode("utf-8")


def _one_record(raw: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"doc file {path} is not valid JSON ({err})", "fix the JSON") from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise InputError(
            f"doc file {path} should hold one posting (a JSON object)",
            "save the single posting to ask about as its own .json file",
        )
    return data


class SamplePrinter:
    """Prints a batch's samples one after another, streaming the one in front.

    All samples grow together, but interleaving them would be unreadable. So the front sample's
    text is printed as it arrives; the others are buffered, and each is printed (catching up at
    once, then live) when the ones before it have finished. Samples go to stdout, each ending
    with a newline and separated by a blank line; `--- sample i/n ---` headers and the echoed
    prompt go to stderr, so `jobgpt generate > out.txt` keeps only generated text.
    """

    def __init__(
        self,
        num_samples: int,
        stream: bool = True,
        echo: str = "",
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.n = num_samples
        self.stream = stream
        self.echo = echo
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.texts = [""] * num_samples
        self.pending = [""] * num_samples
        self.done = [False] * num_samples
        self.front = 0
        self.started = False  # the first header waits for the first piece, after any warnings

    def feed(self, piece: Piece) -> None:
        if not self.started:
            self.started = True
            self._begin(0)
        self.texts[piece.row] += piece.text
        self.pending[piece.row] += piece.text
        self.done[piece.row] = self.done[piece.row] or piece.finish_reason is not None
        while self.front < self.n:
            if self.stream or self.done[self.front]:
                self._write(self.pending[self.front])
                self.pending[self.front] = ""
            if not self.done[self.front]:
                return
            self._end(self.front)
            self.front += 1
            if self.front < self.n:
                self._begin(self.front)

    def _begin(self, row: int) -> None:
        if self.n > 1 or self.echo:
            self.out.flush()
            header = f"--- sample {row + 1}/{self.n} ---\n" if self.n > 1 else ""
            self.err.write(header + self.echo)
            self.err.flush()

    def _end(self, row: int) -> None:
        text = self.texts[row]
        self._write("" if text.endswith("\n") else "\n")
        if row + 1 < self.n:
            self._write("\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
