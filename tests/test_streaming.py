"""Text streaming: never a broken Korean character, exact spaces and newlines, stop strings."""

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from jobgpt.streaming import REPLACEMENT_CHAR, IncrementalDecoder, StopStrings
from jobgpt.tokenizer import train_tokenizer

TRAINING_TEXTS = [
    "백엔드 개발자를 채용합니다.\n자격 요건: 파이썬 3년 이상",
    "프론트엔드 개발자 채용 공고\n\n우대 사항: React, TypeScript",
    "hello world, 회사 소개와 복리후생",
] * 5

# Syllables that never occur above, so they are spelled with byte tokens (3 per syllable).
STREAM_TEXTS = [
    "",
    "뷁",
    "개발자 뷁햏 채용\n\n  두 칸 공백과\t탭",
    "이모지 😀👩‍💻 와 한자 漢字, ㆍ 가운뎃점\r\n끝 ",
    "   앞뒤 공백   ",
]


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    """jobgpt's own lossless byte-fallback BPE."""
    return train_tokenizer(TRAINING_TEXTS, vocab_size=400, min_frequency=1)


@pytest.fixture(scope="module")
def byte_level() -> Tokenizer:
    """A GPT-2-style byte-level BPE: a syllable can be cut anywhere inside its UTF-8 bytes."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXTS, trainer)
    return tok


def stream_pieces(tok: Tokenizer, ids: list[int]) -> list[str]:
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids]
    return [*pieces, decoder.flush()]


@pytest.mark.parametrize("which", ["bpe", "byte_level"])
@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_pieces_join_to_the_full_decode_without_broken_characters(
    which: str, text: str, request: pytest.FixtureRequest
) -> None:
    tok = request.getfixturevalue(which)
    ids = tok.encode(text).ids
    pieces = stream_pieces(tok, ids)
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any(REPLACEMENT_CHAR in p for p in pieces)


@pytest.mark.parametrize("which", ["bpe", "byte_level"])
def test_an_unseen_syllable_is_held_back_until_complete(
    which: str, request: pytest.FixtureRequest
) -> None:
    tok = request.getfixturevalue(which)
    ids = tok.encode("뷁").ids
    assert len(ids) > 1  # really split across tokens, else this test proves nothing
    decoder = IncrementalDecoder(tok)
    assert [decoder.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert decoder.push(ids[-1]) == "뷁"
    assert decoder.flush() == ""


def test_flush_gives_an_unfinished_character_as_replacement(bpe: Tokenizer) -> None:
    ids = bpe.encode("개발자 뷁").ids[:-1]  # the last byte of 뷁 never comes
    decoder = IncrementalDecoder(bpe)
    assert "".join(decoder.push(i) for i in ids) == "개발자 "
    assert decoder.flush() == REPLACEMENT_CHAR * 2  # one per byte token, as decode() gives
    assert decoder.flush() == ""


def test_markers_are_decoded_as_text(bpe: Tokenizer) -> None:
    ids = bpe.encode("[ANSWER]\n요약").ids
    assert "".join(stream_pieces(bpe, ids)) == "[ANSWER]\n요약"


def test_stop_string_split_across_pieces_is_never_half_printed() -> None:
    stops = StopStrings(["[END]"])
    assert stops.push("채용 공고 [E") == "채용 공고 "
    assert stops.push("N") == ""
    assert stops.push("D] 뒤") == ""
    assert stops.stopped
    assert stops.push("more") == ""


def test_a_false_start_is_released() -> None:
    stops = StopStrings(["[END]"])
    assert stops.push("a [EN") == "a "
    assert stops.push("X") == "[ENX"
    assert stops.push("[") == ""
    assert stops.flush() == "["
    assert not stops.stopped


def test_the_earliest_stop_string_wins() -> None:
    stops = StopStrings(["끝", "\n\n"])
    assert stops.push("첫 줄\n\n둘째 끝") == "첫 줄"


@pytest.mark.parametrize("seed", range(5))
def test_any_split_of_the_text_gives_the_same_output(seed: int) -> None:
    rng = random.Random(seed)
    text = "자격 요건: 파이썬\n\n우대 사항: 없음 ### 다음 공고 ###"
    cuts = sorted(rng.sample(range(1, len(text)), 8))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    stops = StopStrings(["###", "우대 사항:"])
    out = "".join(stops.push(p) for p in pieces)
    assert out == "자격 요건: 파이썬\n\n"
    assert stops.stopped


def test_empty_stop_strings_are_refused() -> None:
    with pytest.raises(ValueError):
        StopStrings([""])
