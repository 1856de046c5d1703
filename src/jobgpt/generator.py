"""`TextGenerator`: the text-level API that `jobgpt generate` and `jobgpt eval` share.

A model and the tokenizer it was trained with, turning a prompt into streamed `Piece`s of text.
Underneath, one decoding loop (`jobgpt.sampling.generate_tokens`) picks tokens with a KV cache,
and `jobgpt.streaming` turns them into text without ever splitting a Korean character.

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

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from jobgpt.architectures import Model
from jobgpt.checkpoint import load_model
from jobgpt.checks import check_generation
from jobgpt.config import GenerateConfig
from jobgpt.errors import ConfigError
from jobgpt.qa import ANSWER_END, EOT, PAD, build_qa_prompt
from jobgpt.sampling import generate_tokens
from jobgpt.streaming import REPLACEMENT_CHAR, IncrementalDecoder, StopStrings
from jobgpt.threads import ThreadPolicy
from jobgpt.tokenizer import special_id

logger = logging.getLogger(__name__)

# Token healing takes back at most this many prompt tokens (see TextGenerator._heal_span).
MAX_HEAL_TOKENS = 3
# Marks where a posting too long for the model's context was shortened (`qa_prompt`).
DOC_CUT = "\n…(중략)…\n"

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


class SampleText:
    """One sample's text: its token ids in, `Piece`s of text out (`TextGenerator.stream`, and
    each request of `jobgpt.engine`). Ends at a stop id or a user stop string."""

    def __init__(
        self,
        row: int,
        tokenizer: Tokenizer,
        stop: Sequence[str],
        healed: str,
        stop_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.row = row
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = StopStrings(stop)
        self.stop_ids = stop_ids
        self.skip = healed  # already part of the prompt: not printed again
        self.n_tokens = 0
        self.done = False

    def push(self, token_id: int) -> Piece | None:
        """Add one generated token; a Piece when there is new text or the sample ends."""
        self.n_tokens += 1
        if token_id in self.stop_ids:  # counted, never printed
            return self.finish("stop")
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

    def __init__(self, model: Model, tokenizer: Tokenizer) -> None:
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
        """Load a checkpoint (`jobgpt.checkpoint.load_model`) onto `device`."""
        model, tokenizer, ckpt = load_model(path, device)
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
        """Encode a text prompt with token healing: the prompt's last token (or last few, see
        `_heal_span`) is left for the model to pick, as any token whose text starts with it.

        Not healed: an empty prompt, one ending in a special token or marker (always whole), or
        one ending in a byte token (part of a character).
        """
        ids = self.encode_prompt(text)
        back = self._heal_span(ids)
        if back == 0:
            return Prompt(ids)
        healed = self.tokenizer.decode(ids[-back:], skip_special_tokens=False)
        allowed = torch.tensor([t.startswith(healed) for t in self.token_texts()])
        allowed[list(self.control_ids)] = False  # "<" must not heal into "<|endoftext|>"
        return Prompt(ids[:-back], healed, allowed)

    def _heal_span(self, ids: list[int]) -> int:
        """How many tokens to take back from the prompt's end: the last one, or more (up to
        MAX_HEAL_TOKENS) where one vocabulary token spans them. Training merged " ===\n\n회사명:"
        into one token, while a prompt ending " ===\n" is " ===" + "\n": healing only the "\n"
        leaves the model after a " ===" it never saw there, and it wrote garbage."""
        span = 0
        for back in range(1, MAX_HEAL_TOKENS + 1):
            if back >= len(ids) or ids[-back] in self.added_ids:
                break
            healed = self.tokenizer.decode(ids[-back:], skip_special_tokens=False)
            if not healed or healed.endswith(REPLACEMENT_CHAR):
                break
            longer = any(t.startswith(healed) and len(t) > len(healed) for t in self.token_texts())
            if back == 1 or longer:
                span = back
        return span

    def qa_prompt(self, question: str, doc: str, answer_room: int | None = None) -> str:
        """The question-answer prompt, fitted to the model's context.

        The question and the `[ANSWER]` marker always stay, with `answer_room` tokens (default:
        an eighth of the context) left for the answer to start in. A posting too long for the
        rest keeps its start (company, position) and its end (how to apply) around a visible
        DOC_CUT marker; cropping the prompt from the left instead would drop the question.
        """
        block = self.model.config.block_size
        budget = block - (block // 8 if answer_room is None else answer_room)
        prompt = build_qa_prompt(question, doc)
        n_tokens = len(self.encode_prompt(prompt))
        if n_tokens <= budget:
            return prompt
        if len(self.encode_prompt(build_qa_prompt(question, DOC_CUT))) > budget:
            raise ConfigError(
                f"the question is too long for the model's context of {block} tokens",
                "ask a shorter question",
            )

        def shortened(keep: int) -> str:  # `keep` characters of the posting around DOC_CUT
            head, tail = doc[: keep - keep // 3].rstrip(), doc[len(doc) - keep // 3 :].lstrip()
            return build_qa_prompt(question, head + DOC_CUT + tail)

        low, high = 0, len(doc)  # the longest cut that fits: binary search, ~log2(len) encodes
        while low < high:
            mid = (low + high + 1) // 2
            if len(self.encode_prompt(shortened(mid))) <= budget:
                low = mid
            else:
                high = mid - 1
        keep, short = low, shortened(low)
        logger.info(
            "the posting takes %d tokens with the question, more than the model's context of %d "
            "leaves for it: kept its start and end (%d characters of %d; 공고 중간 생략)",
            n_tokens,
            block,
            keep,
            len(doc),
        )
        return short

    def sample_text(self, prompt: Prompt, stop: Sequence[str] = (), row: int = 0) -> SampleText:
        """The text stream of one sample of `prompt`, ending at this model's stop ids."""
        return SampleText(row, self.tokenizer, stop, prompt.healed, self.stop_ids)

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
        threads: ThreadPolicy | None = None,
    ) -> Iterator[Piece]:
        """Generate `num_samples` continuations of `prompt` as one batch, yielding text pieces.

        A text prompt is encoded with `prepare` (token healing); a `Prompt` is used as given.
        Each sample ends with exactly one piece carrying its finish_reason. The same seed gives the
        same text (on the same device); temperature 0 ignores the seed. `threads` chooses the
        CPU threads of the decoding steps (`jobgpt.threads`); None leaves torch's as they are.
        """
        check_generation(num_samples, max_new_tokens, stop)
        if isinstance(prompt, str):
            prompt = self.prepare(prompt)
        samples = [self.sample_text(prompt, stop, r) for r in range(num_samples)]
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
            threads=threads,
        )
        for step in steps:
            for sample, token_id in zip(samples, step.tolist(), strict=True):
                if sample.done:  # finished by a stop token (-1 from here on) or a stop string
                    continue
                if piece := sample.push(token_id):
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
