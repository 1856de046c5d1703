"""Stage 4: sample job-posting text from a checkpoint (`jobgpt generate`, scripts/generate.py).

`TextGenerator` is the text-level API the CLI, evaluation and the server share: a model and the
tokenizer it was trained with, turning a prompt into streamed `Piece`s of text. Underneath, one
decoding loop (`jobgpt.sampling.generate_tokens`) picks tokens with a KV cache, and
`jobgpt.streaming` turns them into text without ever splitting a Korean character.

Every prompt starts a new document: the token stream the model trained on is
``doc <|endoftext|> doc <|endoftext|> ...``, so a document begins right after ``<|endoftext|>``
and the prompt is conditioned on it (an empty prompt is just that token). Generation stops on the
``<|endoftext|>`` and ``[/ANSWER]`` token ids, and on any user ``--stop`` string.

Token healing. The text of a prompt can match training exactly while its *tokens* do not: the
question-answer prompt ends with ``[ANSWER]\n``, and on its own that ``\n`` is one token, but
in training it was always merged with what followed (``\n요약:\n-`` is one token). A model
never sees a lone ``\n`` there, so it would answer from an unfamiliar state. `prepare` therefore
takes the prompt's last token back off and lets the model's first token be any token whose text
starts with it; that text is then not printed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from tokenizers import Tokenizer

from jobgpt.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    tokenizer_from_checkpoint,
)
from jobgpt.commands import command
from jobgpt.config import DEFAULT_NUM_SAMPLES, GenerateConfig, check_generation
from jobgpt.errors import CheckpointError, ConfigError, InputError
from jobgpt.model import GPT
from jobgpt.qa import ANSWER_END, EOT, PAD, build_qa_prompt
from jobgpt.runtime import resolve_device
from jobgpt.sampling import generate_tokens
from jobgpt.streaming import REPLACEMENT_CHAR, IncrementalDecoder, StopStrings
from jobgpt.tokenizer import special_id

logger = logging.getLogger(__name__)

# The reference corpus's question; --doc-file without --question asks it.
DEFAULT_QUESTION = "이 구인 정보를 요약해줘."

_DEFAULTS = GenerateConfig()  # keyword defaults below come from the one config definition


@dataclass(frozen=True)
class Piece:
    """New text of one sample. A sample's last piece has finish_reason "stop" or "length"."""

    row: int
    text: str
    finish_reason: str | None = None
    n_tokens: int = 0  # tokens the sample generated (stop token included); set on the last piece


@dataclass(frozen=True)
class Prompt:
    """Token ids to condition on, after token healing (see the module docstring)."""

    ids: list[int]
    healed: str = ""  # text of the token taken off the end: every sample starts with it
    first_allowed: torch.Tensor | None = None  # (V,) bool: tokens whose text starts with it


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop": a stop token or string; "length": max_new_tokens reached
    n_tokens: int


class _Sample:
    """One row of the batch: its text stream, stop-string filter and progress."""

    def __init__(self, row: int, tokenizer: Tokenizer, stop: Sequence[str], healed: str) -> None:
        self.row = row
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = StopStrings(stop)
        self.skip = healed  # already part of the prompt: not printed again
        self.n_tokens = 0
        self.done = False

    def push(self, token_id: int) -> Piece | None:
        self.n_tokens += 1
        text = self.stops.push(self._unheal(self.decoder.push(token_id)))
        if self.stops.stopped:
            return self._close(text, "stop")
        return Piece(self.row, text) if text else None

    def finish(self, reason: str) -> Piece:
        """Flush held-back text (an unfinished character, a partial stop string) and close."""
        text = self.stops.push(self._unheal(self.decoder.flush()))
        if self.stops.stopped:
            return self._close(text, "stop")
        return self._close(text + self.stops.flush(), reason)

    def _unheal(self, text: str) -> str:
        """Drop the healed prompt text from the start of the stream (it starts with it)."""
        n = min(len(self.skip), len(text))
        self.skip = self.skip[n:]
        return text[n:]

    def _close(self, text: str, reason: str) -> Piece:
        self.done = True
        return Piece(self.row, text, reason, self.n_tokens)


class TextGenerator:
    """A model plus the tokenizer it was trained with: prompts in, streamed text out."""

    def __init__(self, model: GPT, tokenizer: Tokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eot_id = special_id(tokenizer, EOT)
        answer_end = tokenizer.token_to_id(ANSWER_END)
        self.stop_ids = frozenset(i for i in (self.eot_id, answer_end) if i is not None)
        self.added_ids = frozenset(tokenizer.get_added_tokens_decoder())  # specials, markers
        pad_id = tokenizer.token_to_id(PAD)
        self.control_ids = self.stop_ids | ({pad_id} if pad_id is not None else set())
        self._token_texts: list[str] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.tok_emb.weight.device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> TextGenerator:
        """Load a checkpoint, check its tokenizer matches its model, move it to `device`."""
        ckpt = load_checkpoint(path)
        tokenizer = tokenizer_from_checkpoint(ckpt)
        check_checkpoint_tokenizer(ckpt, tokenizer, path)
        model = model_from_checkpoint(ckpt).to(resolve_device(device))
        logger.info(
            "loaded %s: %.1fM parameters, vocab %s, context %d tokens, step %s, on %s",
            path,
            model.num_params() / 1e6,
            f"{model.config.vocab_size:,}",
            model.config.block_size,
            ckpt.get("step", "?"),
            model.tok_emb.weight.device,
        )
        return cls(model, tokenizer)

    def encode_prompt(self, text: str) -> list[int]:
        """`<|endoftext|>` + the text's tokens: the start of a new document, as in training."""
        return [self.eot_id, *self.tokenizer.encode(text, add_special_tokens=False).ids]

    def prepare(self, text: str) -> Prompt:
        """Encode a text prompt with token healing: the last token is left for the model to pick.

        Not healed: an empty prompt, one ending in a special token or marker (always whole), or
        one ending in a byte token (part of a character).
        """
        ids = self.encode_prompt(text)
        if len(ids) < 2 or ids[-1] in self.added_ids:
            return Prompt(ids)
        healed = self.tokenizer.decode(ids[-1:], skip_special_tokens=False)
        if not healed or healed.endswith(REPLACEMENT_CHAR):
            return Prompt(ids)
        allowed = torch.tensor([t.startswith(healed) for t in self.token_texts()])
        allowed[list(self.control_ids)] = False  # "<" must not heal into "<|endoftext|>"
        return Prompt(ids[:-1], healed, allowed)

    def token_texts(self) -> list[str]:
        """Each id's text on its own (computed once; a byte token alone is usually U+FFFD)."""
        if self._token_texts is None:
            ids = [[i] for i in range(self.tokenizer.get_vocab_size())]
            self._token_texts = self.tokenizer.decode_batch(ids, skip_special_tokens=False)
        return self._token_texts

    def stream(
        self,
        prompt: str | Prompt,
        *,
        num_samples: int = 1,
        max_new_tokens: int = _DEFAULTS.max_new_tokens,
        temperature: float = _DEFAULTS.temperature,
        top_k: int = _DEFAULTS.top_k,
        top_p: float = _DEFAULTS.top_p,
        repetition_penalty: float = _DEFAULTS.repetition_penalty,
        stop: Sequence[str] = (),
        seed: int = _DEFAULTS.seed,
        use_cache: bool = True,
    ) -> Iterator[Piece]:
        """Generate `num_samples` continuations of `prompt` as one batch, yielding text pieces.

        A text prompt is encoded with `prepare` (token healing); a `Prompt` is used as given.
        Each sample ends with exactly one piece carrying its finish_reason. The same seed gives the
        same text (on the same device); temperature 0 ignores the seed.
        """
        check_generation(num_samples, max_new_tokens, stop)
        if isinstance(prompt, str):
            prompt = self.prepare(prompt)
        samples = [_Sample(r, self.tokenizer, stop, prompt.healed) for r in range(num_samples)]
        steps = generate_tokens(
            self.model,
            [prompt.ids] * num_samples,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            stop_ids=self.stop_ids,
            generator=torch.Generator(device=self.device).manual_seed(seed),
            use_cache=use_cache,
            first_allowed=prompt.first_allowed,
        )
        for step in steps:
            for sample, token_id in zip(samples, step.tolist(), strict=True):
                if sample.done:  # finished by a stop token (-1 from here on) or a stop string
                    continue
                if token_id in self.stop_ids:
                    sample.n_tokens += 1
                    yield sample.finish("stop")
                elif piece := sample.push(token_id):
                    yield piece
            if all(s.done for s in samples):
                steps.close()  # rows stopped by a stop string: no need to decode further
                return
        for sample in samples:
            if not sample.done:
                yield sample.finish("length")

    def generate(self, prompt: str | Prompt, **kwargs: Any) -> list[Completion]:
        """Like `stream`, but returns each sample's whole text."""
        n = kwargs.get("num_samples", 1)
        texts = [""] * n
        ends: list[Piece | None] = [None] * n
        for piece in self.stream(prompt, **kwargs):
            texts[piece.row] += piece.text
            if piece.finish_reason:
                ends[piece.row] = piece
        return [
            Completion(text, end.finish_reason, end.n_tokens)
            for text, end in zip(texts, ends, strict=True)
            if end is not None
        ]


def check_checkpoint_tokenizer(ckpt: dict[str, Any], tokenizer: Tokenizer, path: Any) -> None:
    """Refuse a checkpoint whose embedded tokenizer does not fit its model (ids would be wrong)."""
    info = ckpt["tokenizer"]
    fix = (
        f"the checkpoint is damaged or was assembled by hand; train again with `{command('train')}`"
    )
    expected = info.get("sha256")
    actual = hashlib.sha256(info["json"].encode("utf-8")).hexdigest()
    if expected is not None and expected != actual:
        raise CheckpointError(
            f"{path}: the embedded tokenizer's sha256 {actual[:12]} differs from the recorded "
            f"{str(expected)[:12]}",
            fix,
        )
    sizes = {  # model_config is what the weights were built for; the record, what was saved
        "the model": ckpt["model_config"].get("vocab_size"),
        "the tokenizer record": info.get("vocab_size"),
    }
    for what, size in sizes.items():
        if size is not None and size != tokenizer.get_vocab_size():
            raise CheckpointError(
                f"{path}: {what} has vocab {size} but the embedded tokenizer has "
                f"{tokenizer.get_vocab_size()} tokens — ids would decode to the wrong text",
                fix,
            )


# --- the CLI stage ------------------------------------------------------------------------------


def run(cfg: GenerateConfig) -> list[Completion]:
    """`jobgpt generate`: print samples (or a QA answer) to stdout; logs go to stderr."""
    prompt, echo = build_prompt(cfg)
    gen = TextGenerator.from_checkpoint(cfg.checkpoint, cfg.device)
    num_samples = samples_to_draw(cfg)
    printer = SamplePrinter(num_samples, cfg.stream, echo=echo)
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
    ):
        printer.feed(piece)
        if piece.finish_reason:
            ends.append(piece)
    seconds = time.perf_counter() - start
    tokens = sum(p.n_tokens for p in ends)
    logger.info(
        "%d sample(s), %d tokens in %.1fs (%.0f tokens/s) on %s",
        num_samples,
        tokens,
        seconds,
        tokens / max(seconds, 1e-9),
        gen.device,
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


def build_prompt(cfg: GenerateConfig) -> tuple[str, str]:
    """(prompt text, text to echo on stderr before each sample) in plain or question-answer mode."""
    if cfg.doc_file is None:
        if cfg.question is not None:
            raise ConfigError(
                "--question needs a posting to ask about",
                "add --doc-file posting.txt (or .json)",
            )
        return cfg.prompt, cfg.prompt
    if cfg.prompt:
        raise ConfigError(
            "--prompt and --doc-file cannot be combined",
            "use --prompt to continue text, or --question/--doc-file to ask about a posting",
        )
    question = cfg.question
    if question is None or not question.strip():
        logger.info("no --question given: asking %r", DEFAULT_QUESTION)
        question = DEFAULT_QUESTION
    return build_qa_prompt(question, read_doc(cfg.doc_file)), ""


def read_doc(path_str: str) -> str:
    """A posting for question-answer mode: a .txt file as is, or a .json posting rendered."""
    from jobgpt.postings import record_text

    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"doc file {path} does not exist", "pass a posting saved as .txt or .json")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"doc file {path} is not UTF-8 text ({err})", "save it as UTF-8") from None
    text = raw
    if path.suffix.lower() == ".json":
        text = record_text(_one_record(raw, path))
    if not text.strip():
        raise InputError(
            f"doc file {path} has no posting text",
            "put the job posting in it (text, or JSON with title/content/... fields)",
        )
    return text


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
