"""Turning a stream of token ids into a stream of text, safely for Korean.

Two small state machines, one per generated sample:

* `IncrementalDecoder`: a Hangul syllable the vocabulary lacks is spelled as three byte tokens
  (``뷁`` = ``<0xEB><0xB7><0x81>``). Decoding after the first or second byte gives U+FFFD (�), so
  the decoder holds text back while the decoded tail ends in U+FFFD and emits it once the
  character is complete. The emitted pieces join to exactly ``tokenizer.decode(all_ids)``.
  (``tokenizers.decoders.DecodeStream`` does the same in Rust, but has no flush for a stream that
  ends mid-character and drops the QA markers with skip_special_tokens; this is 30 lines.)
* `StopStrings`: cuts the text at the first user stop string. Text that could be the start of a
  stop string is held back until the next piece decides it, so a stop string split across
  tokens still matches and is never half-printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

REPLACEMENT_CHAR = "\ufffd"  # what decoding gives for an incomplete UTF-8 sequence


class IncrementalDecoder:
    """Token ids in, complete characters out.

    Keeps two offsets into the ids (the scheme of HuggingFace's TextStreamer and DecodeStream):
    text of ids[:read] has been emitted; ids[prefix:read] are re-decoded as context, so a
    decoder whose output for a token depends on its neighbour still gives the right text.
    For invalid byte sequences (a model can emit any bytes) the pieces still show U+FFFD, but
    their count may differ from ``decode(all_ids)``, which can replace a whole run of byte
    tokens, including a character already emitted, when any byte in the run is invalid.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token; return the new text, '' while a character is still incomplete."""
        self.ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """Text of any held-back tokens (an unfinished character decodes as U+FFFD here)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if self.read == len(self.ids):
            return ""
        seen = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        if not final and (len(text) <= len(seen) or text.endswith(REPLACEMENT_CHAR)):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(seen) :]


class StopStrings:
    """Passes text through until one of `stops` appears; holds back possible stop-string starts."""

    def __init__(self, stops: Sequence[str]) -> None:
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        self.stops = tuple(stops)
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add text; return what is safe to show. Sets `stopped` when a stop string appears."""
        if self.stopped:
            return ""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        hold = self._partial_match()
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        """The held-back text: the stream ended, so it was not a stop string after all."""
        out, self.pending = self.pending, ""
        return out

    def _partial_match(self) -> int:
        """Length of the longest tail of `pending` that is a proper prefix of some stop string."""
        longest = min(len(self.pending), max((len(s) for s in self.stops), default=1) - 1)
        for size in range(longest, 0, -1):
            tail = self.pending[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0
