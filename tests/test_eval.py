"""`jobgpt eval`: bits per byte by hand, the bounded stream, faithfulness rules, the whole stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny
from tokenizers import Tokenizer

from jobgpt.checkpoint import load_checkpoint, save_checkpoint
from jobgpt.cli import main
from jobgpt.config import ModelConfig
from jobgpt.demo_corpus import generate_demo_corpus
from jobgpt.errors import ConfigError
from jobgpt.eval_gen import distinct_3grams, judge, posting_part
from jobgpt.eval_qa import (
    FIELDS,
    answer_fields,
    doc_fields,
    read_examples,
    score_answer,
    summarise,
    well_formed,
)
from jobgpt.eval_text import RollingWindows, score_files
from jobgpt.model import GPT
from jobgpt.postings import CONTACT_LABELS, SUMMARY_LABELS, render_posting
from jobgpt.qa import BLOCK_SEPARATOR, EOT, format_qa_document
from jobgpt.tokenizer import train_tokenizer
from jobgpt.train import run as train

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

DOCS = [
    "=== [뷁카오] 백엔드 개발자 채용 ===\n회사명: 뷁카오\n포지션: 백엔드 개발자",
    "hello world, 안녕하세요 여러분",
    "=== [네이버] 프론트엔드 개발자 채용 ===\n우대 사항:\nReact\n\n" + " ".join(["짧은 문장"] * 12),
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(DOCS * 3, vocab_size=300, min_frequency=1)


def tiny_model(tok: Tokenizer, block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tok.get_vocab_size(), block_size=block_size, n_layer=1, n_head=2, n_embd=16
    )
    return GPT(config).eval()


def stream_of(tok: Tokenizer, docs: list[str]) -> list[int]:
    """<|endoftext|>, then each document's tokens followed by <|endoftext|>."""
    eot = tok.token_to_id(EOT)
    ids = [eot]
    for doc in docs:
        ids += [*tok.encode(doc, add_special_tokens=False).ids, eot]
    return ids


def corpus_file(path: Path, docs: list[str]) -> Path:
    path.write_text("\n\n\n".join(docs) + "\n", encoding="utf-8")  # 2+ blank lines separate
    return path


@torch.no_grad()
def hand_nats(model: GPT, ids: list[int], stride: int) -> float:
    """Target by target: the window that scores target j is the first whose end reaches j (ends
    at block, block + stride, ... and the stream's last position); it starts `block` before its
    end (or at 0), and the model sees ids[start:end]."""
    block, last = model.config.block_size, len(ids) - 1
    total = 0.0
    for j in range(1, last + 1):
        end = block if j <= block else block + math.ceil((j - block) / stride) * stride
        end = min(end, last)
        start = max(end - block, 0)
        logits, _ = model(torch.tensor([ids[start:end]]))
        total += F.cross_entropy(logits[0, j - 1 - start], torch.tensor(ids[j])).item()
    return total


# --- bits per byte ---------------------------------------------------------------------------


def test_stride_equal_to_the_block_is_the_plain_chunked_sum(tmp_path: Path, tok: Tokenizer) -> None:
    model = tiny_model(tok)
    ids = stream_of(tok, DOCS)
    block = model.config.block_size
    docs = DOCS
    while (len(ids) - 1) % block:  # pad the last document until the chunks fit exactly
        docs = [*docs[:-1], docs[-1] + "!"]
        ids = stream_of(tok, docs)
    score = score_files(model, tok, str(corpus_file(tmp_path / "c.txt", docs)), stride=block)
    x = torch.tensor(ids[:-1]).view(-1, block)
    y = torch.tensor(ids[1:]).view(-1, block)
    with torch.no_grad():
        logits, _ = model(x)
    plain = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert score.tokens == len(ids) - 1 and score.documents == len(docs)
    assert score.bytes == n_bytes
    assert score.nats == pytest.approx(plain, rel=1e-5)
    assert score.bits_per_byte == pytest.approx(plain / (math.log(2) * n_bytes), rel=1e-5)
    assert score.nats_per_token == pytest.approx(plain / (len(ids) - 1), rel=1e-5)


@pytest.mark.parametrize("stride", [1, 3, 8, 16])
def test_sliding_windows_score_every_token_once_with_full_context(
    tmp_path: Path, tok: Tokenizer, stride: int
) -> None:
    model = tiny_model(tok)
    ids = stream_of(tok, DOCS)
    score = score_files(model, tok, str(corpus_file(tmp_path / "c.txt", DOCS)), stride=stride)
    assert score.tokens == len(ids) - 1
    assert score.nats == pytest.approx(hand_nats(model, ids, stride), rel=1e-5)


def test_windows_cover_the_stream_in_order(tok: Tokenizer) -> None:
    ids = list(range(100, 141))  # any ids: the windows only slice the stream
    for block, stride in [(16, 5), (16, 16), (8, 1), (64, 32)]:
        rolling = RollingWindows(block, stride, ids[0])
        windows = [*rolling.push(ids[1:20]), *rolling.push(ids[20:]), *rolling.finish()]
        scored = [int(t) for w in windows for t in w.y[len(w.y) - w.scored :]]
        assert scored == ids[1:]  # every target exactly once, in order
        for w in windows:  # each window is a contiguous slice, as long as the stream allows
            assert len(w.x) == min(block, len(ids) - 1)
            assert list(w.y[:-1]) == list(w.x[1:])


def test_a_short_stream_is_one_window_scoring_all(tmp_path: Path, tok: Tokenizer) -> None:
    model = tiny_model(tok, block_size=64)
    ids = stream_of(tok, DOCS[:1])
    assert len(ids) - 1 < 64
    score = score_files(model, tok, str(corpus_file(tmp_path / "c.txt", DOCS[:1])))
    assert score.stride == 32  # half the context by default
    assert score.nats == pytest.approx(hand_nats(model, ids, 32), rel=1e-5)


def test_the_rolling_buffer_stays_bounded(tmp_path: Path, tok: Tokenizer) -> None:
    model = tiny_model(tok)
    many = corpus_file(tmp_path / "many.txt", DOCS * 150)  # ~thousands of tokens
    one_long = tmp_path / "long.txt"  # one document, no separators
    one_long.write_text("짧은 문장 hello world " * 600, encoding="utf-8")
    for path in (many, one_long):
        rolling = RollingWindows(16, 4, tok.token_to_id(EOT))
        score = score_files(model, tok, str(path), stride=4, stream=rolling)
        assert score.tokens > 50 * rolling.capacity
        assert rolling.peak <= rolling.capacity == 16 + 2 * 4 + 1


def test_a_stride_larger_than_the_context_is_refused(tmp_path: Path, tok: Tokenizer) -> None:
    with pytest.raises(ConfigError, match="--stride 17 does not fit"):
        score_files(tiny_model(tok), tok, str(corpus_file(tmp_path / "c.txt", DOCS)), stride=17)


# --- question-answer faithfulness, no model -----------------------------------------------------

DOC = """=== [뷁카오] 백엔드 개발자 채용 ===

회사명: 뷁카오 주식회사
포지션: 백엔드 개발자
부서: 플랫폼팀
위치: 서울 강남구   테헤란로 1
고용형태: 정규직
급여: 연봉 5,000만원
마감일: 2026-01-31

TEL: 02-123-4567
EMAIL: jobs@bwk.kr"""
REFERENCE = """요약:
- 회사: 뷁카오 주식회사
- 포지션: 백엔드 개발자
- 위치: 서울 강남구 테헤란로 1
- 고용형태: 정규직
- 급여: 연봉 5,000만원
- 마감일: 2026-01-31

연락처(공공정보):
- TEL: 02-123-4567"""


def test_each_field_is_correct_wrong_hallucinated_or_missing() -> None:
    answer = """요약:
- 회사: 뷁카오   주식회사
- 포지션: 플랫폼팀
- 위치: 부산 해운대구
- 급여: 연봉
- 마감일: 2026-01-31
- EMAIL: jobs@bwk.kr"""
    outcomes = score_answer(answer, DOC, REFERENCE)
    assert outcomes == {
        "company": "correct",  # equal once whitespace is collapsed
        "position": "wrong",  # another field's value
        "location": "hallucinated",  # nowhere in the posting
        "employment": "missing",  # the reference states it, the answer does not
        "salary": "wrong",  # a part of the posting's value
        "deadline": "correct",
        "email": "correct",  # not in the reference, but stated and true
        "phone": "missing",
    }
    # Without a reference, the posting says what is expected: all its fields.
    alone = score_answer(answer, DOC, None)
    assert alone["employment"] == alone["phone"] == "missing"
    assert score_answer("요약:\n- 회사: 뷁카오 주식회사", "회사명: 뷁카오 주식회사", None) == {
        "company": "correct"  # fields neither side has are not scored
    }


def test_fields_are_read_from_lines_of_either_form() -> None:
    assert answer_fields(REFERENCE)["location"] == "서울 강남구 테헤란로 1"
    assert doc_fields(DOC)["location"] == "서울 강남구 테헤란로 1"
    assert doc_fields(DOC)["company"] == "뷁카오 주식회사"  # 회사명, not 회사
    assert "company" not in answer_fields("회사명: 뷁카오\n회사 소개:\n좋은 회사")
    assert answer_fields("마감일: 상시채용\n- TEL: 010")["deadline"] == "상시채용"


def test_the_field_table_uses_the_template_labels() -> None:
    assert {f.doc_label for f in FIELDS} <= set(SUMMARY_LABELS) | set(CONTACT_LABELS)
    assert len({f.key for f in FIELDS}) == len(FIELDS)


def test_well_formed_needs_the_end_marker_and_the_reference_fields() -> None:
    assert well_formed(REFERENCE, ended=True, reference=REFERENCE)
    assert not well_formed(REFERENCE, ended=False, reference=REFERENCE)
    assert not well_formed("요약:\n- 회사: 뷁카오 주식회사", ended=True, reference=REFERENCE)
    assert well_formed("아무 말", ended=True, reference=None)


def test_summary_counts_shares_of_scored_fields() -> None:
    examples = [
        {"has_reference": True, "well_formed": True, "fields": {"company": "correct"}},
        {
            "has_reference": True,
            "well_formed": False,
            "fields": {"company": "hallucinated", "phone": "missing"},
        },
    ]
    summary = summarise(examples)
    assert summary["answers"] == 2 and summary["well_formed"] == 0.5
    assert summary["fields"]["company"]["scored"] == 2
    assert summary["fields"]["company"]["correct_share"] == 0.5
    assert summary["fields"]["salary"]["scored"] == 0
    assert summary["fields"]["salary"]["correct_share"] is None
    overall = summary["overall"]
    assert (overall["scored"], overall["correct"], overall["missing"]) == (3, 1, 1)
    assert overall["hallucinated_share"] == pytest.approx(1 / 3)


def test_demo_references_score_as_all_correct(tmp_path: Path) -> None:
    path = tmp_path / "demo.txt"
    path.write_text(BLOCK_SEPARATOR.join(generate_demo_corpus(40, 7)), encoding="utf-8")
    examples = list(read_examples([str(path)], 40))
    assert len(examples) == 40
    outcomes = [o for e in examples for o in score_answer(e.reference, e.doc, e.reference).values()]
    assert outcomes and set(outcomes) == {"correct"}


# --- structure of free generations, no model ----------------------------------------------------

RECORD = {
    "company": "뷁카오",
    "title": "백엔드 개발자",
    "duties": "API 개발",
    "requirements": "파이썬 3년",
    "benefits": "점심 제공",
}


def test_a_rendered_posting_reads_as_a_posting(tok: Tokenizer) -> None:
    text = render_posting(RECORD)
    verdict = judge(text, True, tok)
    assert verdict.header and verdict.in_order and verdict.is_posting
    assert verdict.sections == 3
    assert not judge(text, False, tok).is_posting  # cut off by the token limit
    # A QA example is judged on its [DOC] part.
    example = format_qa_document("요약해줘", text, "요약:\n- 회사: 뷁카오")
    assert posting_part(example).strip() == text
    assert judge(example, True, tok).is_posting


def test_headerless_repeated_or_shuffled_sections_do_not(tok: Tokenizer) -> None:
    text = render_posting(RECORD)
    body = text.split("\n", 1)[1]
    assert not judge(body, True, tok).header
    shuffled = text.replace("업무 내용:", "TMP:").replace("복리후생:", "업무 내용:")
    assert not judge(shuffled.replace("TMP:", "복리후생:"), True, tok).in_order
    assert not judge(text + "\n\n업무 내용:\n또 개발", True, tok).in_order
    assert not judge("=== 제목 ===\n아무 말", True, tok).in_order  # no section at all


def test_distinct_3grams() -> None:
    assert distinct_3grams([1, 2, 3, 1, 2, 3]) == 3 / 4
    assert distinct_3grams([1, 2, 3, 4]) == 1.0
    assert distinct_3grams([1, 2]) is None


# --- the whole stage on a tiny trained checkpoint -----------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    # block 128: a QA prompt (shortened to fit) still holds the question and some posting
    train(tiny(data_dir, out, model={"block_size": 128, "dropout": 0.0}, max_steps=4))
    return out / "best.pt"


def run_eval(capsys: pytest.CaptureFixture, *flags: str) -> tuple[int, str, str]:
    code = main(["eval", "--device", "cpu", "--max-new-tokens", "24", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_stage_measures_everything_and_reports_it(
    checkpoint: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    qa = tmp_path / "heldout.txt"  # held out: another seed than the training corpus
    qa.write_text(BLOCK_SEPARATOR.join(generate_demo_corpus(3, 1338)), encoding="utf-8")
    posting = tmp_path / "posting.json"
    posting.write_text(json.dumps([RECORD], ensure_ascii=False), encoding="utf-8")
    report = tmp_path / "eval.md"
    flags = ["--checkpoint", str(checkpoint), "--text", str(data_dir / "samples.txt")]
    flags += ["--qa", str(qa), str(posting), "--samples", "2"]
    code, out, err = run_eval(capsys, *flags, "--json", "--report", str(report))
    assert code == 0, err
    results = json.loads(out)  # stdout is the JSON object alone; logs went to stderr
    assert results["checkpoint"]["step"] == 4 and results["checkpoint"]["preset"] == "tiny"
    val = results["val"]
    assert val["tokens"] > 0 and val["perplexity"] == pytest.approx(math.exp(val["loss"]))
    assert 0 < val["bits_per_byte"] < 20
    text = results["text"][0]
    assert text["documents"] == 40 and text["stride"] == 64 and text["bits_per_byte"] > 0
    assert results["qa"]["answers"] == 4 and results["qa"]["with_reference"] == 3
    assert results["qa"]["overall"]["scored"] > 0
    assert set(results["qa"]["fields"]) == {f.key for f in FIELDS}
    assert results["samples"]["samples"] == 2 and len(results["samples"]["per_sample"]) == 2
    markdown = report.read_text(encoding="utf-8")
    for figure in ("bits/byte", "nats/token", "perplexity", "of scored fields", "well-formed"):
        assert figure in markdown
    assert "/loss.png)" in markdown and "read as a posting" in markdown  # a relative link

    code, out, err = run_eval(capsys, "--checkpoint", str(checkpoint), "--samples", "1")
    assert code == 0, err
    assert "val split" in out and "nats/token" in out and "of samples" in out


def test_unusable_inputs_get_one_paragraph(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cases = [
        (["--data-dir", str(tmp_path)], "no token bins"),
        (["--text", str(tmp_path / "nope.txt")], "nope.txt"),
        (["--text", str(corpus_file(tmp_path / "c.txt", DOCS)), "--stride", "500"], "--stride"),
    ]
    for flags, message in cases:
        code, out, err = run_eval(capsys, "--checkpoint", str(checkpoint), *flags)
        assert code == 1 and message in err and "Traceback" not in err
        assert "fix:" in err


def test_bins_gone_since_training_skip_the_val_split(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = load_checkpoint(checkpoint)
    ckpt["data"] = {**ckpt["data"], "dir": str(tmp_path / "moved")}
    moved = tmp_path / "moved.pt"
    save_checkpoint(ckpt, moved)
    code, out, err = run_eval(capsys, "--checkpoint", str(moved), "--samples", "1")
    assert code == 0 and "skipping the val split" in err and "val split" not in out
    code, out, err = run_eval(capsys, "--checkpoint", str(moved), "--samples", "0")
    assert code == 1 and "nothing to evaluate" in err and "--data-dir" in err


def test_real_qa_samples(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    path = SHARED_DATA / "jai" / "samples.txt"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    examples = list(read_examples([str(path)], 1000))
    assert len(examples) == 124 and all(e.reference for e in examples)
    for e in examples:  # the reference answers state the posting's own values
        assert set(score_answer(e.reference, e.doc, e.reference).values()) <= {"correct"}
    flags = ["--checkpoint", str(checkpoint), "--qa", str(path), "--max-qa", "3"]
    code, out, err = run_eval(capsys, *flags, "--samples", "0", "--json")
    assert code == 0, err
    qa = json.loads(out)["qa"]
    assert qa["answers"] == qa["with_reference"] == 3
    # every field a reference states is scored: stated by the answer, or missing from it
    stated = sum(len(answer_fields(e.reference)) for e in examples[:3])
    assert stated > 0 and qa["overall"]["scored"] >= stated
