"""The tokenizer is lossless, has one id per special token, and its files fail clearly."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from jobgpt.config import TokenizerConfig, make_config
from jobgpt.errors import ConfigError, DataError
from jobgpt.qa import EOT, PAD, QA_MARKERS
from jobgpt.tokenizer import (
    BYTE_TOKENS,
    FIRST_BYTE_ID,
    SPECIAL_TOKENS,
    load_tokenizer,
    measure,
    run,
    save_tokenizer,
    special_id,
    tokenizer_sha256,
    train_tokenizer,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CORPUS = [
    "[회사] 백엔드 개발자 채용\n\n• Python, Django 경험 3년 이상\n• 4대보험, 연차 15일",
    "프론트엔드 엔지니어를 모십니다.\n자격 요건:\nㆍ React 경험\nㆍ TypeScript 능숙자",
    "We are hiring a data engineer (Seoul, 2024). Salary: 5,000만원~7,000만원",
    "근무지: 서울특별시 강남구 테헤란로 123, 10층\r\n마감일: 2024-12-31",
    "복리후생:\n\t- 점심 식대 지원\n\t- 재택근무 주 2회\n\t- 최신 MacBook Pro 지급",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS * 20, vocab_size=520)


ROUND_TRIPS = [
    "",
    "  ",
    " ",
    "\t\n\r\n",
    "\n\n\n",
    "백엔드 개발자를 모집합니다. 경력 3년 이상 우대!",
    "Python/Django 개발자 (연봉 5,000만원) - remote OK",
    "이모지 😀🚀 and 👩‍💻 developers",
    "뷁",
    "희귀 한자 龘 과 𠀀",
    "ㆍ 자격 요건ㆍ우대 사항",
    "<0x41>",
    "literal <0xEB><0xB7><0x81> bytes",
    "text with <|endoftext|> and <|pad|> inside",
    "[QUESTION]\n요약해줘\n[/QUESTION]\n\n[DOC]\n본문\n[/DOC]\n\n[ANSWER]\n답\n[/ANSWER]",
    "   leading and trailing spaces   ",
    "a  b   c    d",
    "tabs\tand\r\nwindows\r\nline endings\r\n",
    "control \x00 \x07 \x1b chars",
    "caf\u00e9 vs cafe\u0301 (NFC vs NFD must both survive)",
    "ＡＢＣ full-width and ﬁ ligature (NFKC would change them)",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip_is_exact(tok, text):
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", [t for t in ROUND_TRIPS if EOT not in t and PAD not in t])
def test_round_trip_with_default_decode(tok, text):
    """QA markers and byte tokens are not 'skippable': the default decode keeps them."""
    assert tok.decode(tok.encode(text).ids) == text


def test_special_tokens_are_single_ids(tok):
    assert SPECIAL_TOKENS[:2] == (EOT, PAD) and SPECIAL_TOKENS[2:] == QA_MARKERS
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        assert tok.encode(token).ids == [expected_id]
        assert special_id(tok, token) == expected_id
    ids = tok.encode(f"앞{EOT}뒤").ids
    assert ids.count(special_id(tok, EOT)) == 1


def test_no_learned_token_repeats_part_of_a_special_token():
    # Such a token would never be produced (the special token matches first): a wasted id.
    qa = "[QUESTION]\n요약\n[/QUESTION]\n[DOC]\n{}\n[/DOC]\n[ANSWER]\n답\n[/ANSWER]<|endoftext|>"
    trained = train_tokenizer([qa.format(doc) for doc in CORPUS] * 40, vocab_size=600)
    learned = trained.get_vocab(with_added_tokens=False)
    parts = ("QUESTION", "ANSWER", "DOC]", "|>")
    leaks = [t for t in learned if t not in SPECIAL_TOKENS and any(p in t for p in parts)]
    assert leaks == []


def test_unseen_characters_fall_back_to_bytes_never_unk(tok):
    assert tok.model.unk_token is None
    ids = tok.encode("뷁").ids  # never in the training corpus
    assert ids == [FIRST_BYTE_ID + b for b in "뷁".encode()]
    assert [tok.id_to_token(i) for i in ids] == ["<0xEB>", "<0xB7>", "<0x81>"]


def test_byte_tokens_are_vocab_not_added_tokens(tok):
    added = {t.content for t in tok.get_added_tokens_decoder().values()}
    assert added == set(SPECIAL_TOKENS)
    assert [tok.token_to_id(b) for b in BYTE_TOKENS] == list(range(FIRST_BYTE_ID, 264))
    # The literal text "<0x41>" is six characters, not the byte "A".
    assert tok.token_to_id("<0x41>") not in tok.encode("<0x41>").ids


def test_learned_token_spelled_like_a_byte_token_is_dropped():
    # A corpus full of "<0x41>" would teach BPE a token with that spelling, which the decoder
    # would turn into "A".
    tok = train_tokenizer(["<0x41>", "x <0x41> y", "<0x41><0x42>"] * 50, vocab_size=400)
    for text in ["<0x41>", "x <0x41> y", "<0x41><0x42>"]:
        assert tok.decode(tok.encode(text).ids) == text
    vocab = tok.get_vocab()
    assert all(vocab[b] == FIRST_BYTE_ID + i for i, b in enumerate(BYTE_TOKENS))


def test_no_normalizer_keeps_compatibility_jamo(tok):
    assert tok.normalizer is None
    assert tok.decode(tok.encode("ㆍ").ids) == "ㆍ"  # NFKC would give "ᆞ"


def test_numbers_are_tokens_of_their_own_wherever_they_stand(tok):
    # A model answering from a posting copies its phone numbers and dates token by token, so a
    # number must be tokenized the same in the posting and in the answer, whatever is around it.
    number = "02-5841-4676"
    alone = tok.encode("-5841-4676").ids
    for text in (f"TEL: {number}", f"(전화 {number})", f"연락처:{number}\n", f"- TEL: {number}."):
        ids = tok.encode(text).ids
        assert any(ids[i : i + len(alone)] == alone for i in range(len(ids))), text
    for text in CORPUS:
        tokens = [tok.id_to_token(i) for i in tok.encode(text).ids]
        glued = [t for t in tokens if any(c.isdigit() for c in t) and not t.strip().isdigit()]
        assert glued == [], text


def test_vocab_shortfall_is_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="jobgpt.tokenizer"):
        tok = train_tokenizer(["가나다 라마바"] * 10, vocab_size=5000)
    assert tok.get_vocab_size() < 5000
    assert f"{tok.get_vocab_size():,} of the requested 5,000" in caplog.text


def test_vocab_size_is_respected_exactly_when_the_corpus_allows(tok):
    assert tok.get_vocab_size() == 520
    assert sorted(tok.get_vocab().values()) == list(range(520))  # dense ids, no gaps


def test_tiny_vocab_keeps_frequent_characters_and_stays_lossless():
    texts = [
        "".join(random.Random(i).choices("가나다라마바사아자차카타파하", k=30)) for i in range(50)
    ]
    tok = train_tokenizer(texts, vocab_size=270)  # room for 6 characters only
    assert tok.get_vocab_size() <= 270
    assert all(tok.decode(tok.encode(t).ids) == t for t in texts)


# 20 syllables, each exactly as frequent, and room for only 6 characters: which 6 the trainer
# keeps is decided by a tie. (Before the fix, Rust hash-map order picked them at random.)
TIED = "가나다라마바사아자차카타파하거너더러머버"
TIED_CORPUS = ["".join(random.Random(i).sample(TIED, len(TIED))) for i in range(40)]


def test_tied_characters_are_kept_by_code_point():
    for _ in range(3):  # each training in a process sees another hash-map order
        tok = train_tokenizer(TIED_CORPUS, vocab_size=len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 6)
        alphabet = sorted(t for t in tok.get_vocab(with_added_tokens=False) if len(t) == 1)
        assert alphabet == sorted(TIED)[:6]
        assert all(tok.decode(tok.encode(t).ids) == t for t in TIED_CORPUS)


def test_training_gives_the_same_file_in_every_process(tmp_path):
    """Same corpus, same tokenizer.json, whatever the hash seeds of Python and Rust."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n\n".join(TIED_CORPUS), encoding="utf-8")
    vocab_size = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 6
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"tokenizer-{seed}.json"
        flags = ["--input", str(corpus), "--vocab-size", str(vocab_size), "--out", str(out)]
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-m", "jobgpt", "tokenizer", *flags], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_vocab_size_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="vocab_size 100"):
        train_tokenizer(["abc"], vocab_size=100)


def test_save_load_and_fingerprints_agree(tok, tmp_path):
    path = save_tokenizer(tok, tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(path)
    assert loaded.to_str() == tok.to_str()
    assert (
        hashlib.sha256(path.read_bytes()).hexdigest()
        == tokenizer_sha256(tok)
        == tokenizer_sha256(loaded)
    )
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    text = "저장 후에도 같은 토큰 😀"
    assert loaded.encode(text).ids == tok.encode(text).ids


def test_load_missing_says_how_to_create(tmp_path):
    with pytest.raises(DataError) as err:
        load_tokenizer(tmp_path / "nope.json")
    assert "nope.json" in err.value.message and "train_tokenizer.py" in err.value.hint


def test_load_rejects_non_tokenizer_files(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(DataError, match="not a valid tokenizer.json"):
        load_tokenizer(bad)


def test_load_rejects_tokenizer_without_our_special_tokens(tok, tmp_path):
    from tokenizers import Tokenizer, models

    other = tmp_path / "other.json"
    Tokenizer(models.BPE()).save(str(other))
    with pytest.raises(DataError, match="lacks the special token"):
        load_tokenizer(other)


def test_run_trains_saves_and_reports(tmp_path, capsys, caplog):
    corpus = tmp_path / "corpus.jsonl"
    rng = random.Random(0)
    lines = [
        json.dumps({"text": f"{rng.choice(CORPUS)} #{i}"}, ensure_ascii=False) for i in range(300)
    ]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path / "tok" / "tokenizer.json"
    cfg = make_config(TokenizerConfig, {"input": [str(corpus)], "vocab_size": 500, "out": str(out)})
    with caplog.at_level(logging.INFO, logger="jobgpt.tokenizer"):
        tok = run(cfg)
    assert load_tokenizer(out).to_str() == tok.to_str()
    assert "tokenizer.json" in capsys.readouterr().out
    assert "round trip 100.0%" in caplog.text and "<|endoftext|>=0" in caplog.text


def _real_documents() -> list[str]:
    path = SHARED_DATA / "wanted" / "postings.jsonl"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    from jobgpt.corpus import iter_documents

    return [doc.text for doc in iter_documents([str(path)])]


@pytest.mark.slow
def test_real_postings_round_trip_on_held_out_documents():
    docs = _real_documents()
    random.Random(1337).shuffle(docs)
    n_val = len(docs) // 20
    tok = train_tokenizer(docs[n_val:], vocab_size=24_000)
    health = measure(tok, docs[:n_val])
    assert health.round_trip == 1.0
    assert health.bytes_per_token >= 6.5  # the compression target (bench/bench_tokenizer.py)


def test_the_summary_line_says_in_both_languages_which_docs_were_measured(
    tmp_path: Path, capsys
) -> None:
    """QA: a tiny corpus is measured on training docs, and the Korean label said 검증 (val)."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("서울 채용 공고 하나\n\n\n부산 채용 공고 둘\n", encoding="utf-8")
    run(make_config(TokenizerConfig, {"input": [str(corpus)], "vocab_size": 300,
                                      "out": str(tmp_path / "tok.json")}))  # fmt: skip
    line = capsys.readouterr().out
    assert "training docs (학습 문서)" in line and "검증" not in line
