"""Token bins: exact contents, deterministic group-aware splits, dtype choice, reader checks."""

from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobgpt.bins import TokenBins, load_meta, token_dtype
from jobgpt.config import DatasetConfig, make_config
from jobgpt.dataset import run
from jobgpt.errors import DataError
from jobgpt.qa import EOT
from jobgpt.splits import Groups
from jobgpt.tokenizer import save_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COMPANIES = ["메디인테크", "라이브나우", "코드스쿼드", "데이터랩", "그린에너지", "핀테크원"]
ROLES = ["백엔드 개발자", "프론트엔드 엔지니어", "데이터 분석가", "PM", "디자이너"]
BINS = ("train.bin", "val.bin")


def make_documents(n_companies: int = 6, per_company: int = 5) -> list[str]:
    """Postings whose company intro (> 100 characters) repeats across a company's postings."""
    docs = []
    for c in range(n_companies):
        name = COMPANIES[c % len(COMPANIES)] + str(c)
        intro = (
            f"{name}는 의료용 내시경 시스템을 개발하는 스타트업입니다. 2020년 창업 후 "
            f"기술력과 시장성을 인정받아 시리즈 A 투자를 유치했습니다. 함께 성장할 동료를 "
            f"찾고 있습니다. (회사 번호 {c})"
        )
        for p in range(per_company):
            role = ROLES[(c + p) % len(ROLES)]
            docs.append(
                f"=== [{name}] {role} ===\n\n회사 소개:\n{intro}\n\n"
                f"업무 내용:\n• {role} 업무 {p}\n• 경력 {p + 1}년 이상\n복리후생: 연차 {10 + p}일"
            )
    return docs


def write_corpus(path: Path, docs: list[str]) -> Path:
    lines = [json.dumps({"text": d}, ensure_ascii=False) for d in docs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(make_documents(), vocab_size=700)


@pytest.fixture(scope="module")
def tok_path(tok, tmp_path_factory):
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer.json")


def build(tmp_path: Path, tok_path: Path, docs: list[str], name: str = "data", **over) -> dict:
    corpus = write_corpus(tmp_path / f"{name}.jsonl", docs)
    values = {
        "input": [str(corpus)],
        "tokenizer": str(tok_path),
        "out_dir": str(tmp_path / name),
        "block_size": 16,
        **over,
    }
    return run(make_config(DatasetConfig, values))


def split_documents(tok, out_dir: Path, split: str) -> list[str]:
    """Decode a bin back into its documents (EOT ends each one)."""
    meta = load_meta(out_dir)
    ids = np.fromfile(out_dir / f"{split}.bin", dtype=meta["dtype"]).tolist()
    eot = tok.token_to_id(EOT)
    docs, start = [], 0
    for i, token in enumerate(ids):
        if token == eot:
            docs.append(tok.decode(ids[start:i], skip_special_tokens=False))
            start = i + 1
    assert start == len(ids), "a bin must end with EOT"
    return docs


def test_bins_hold_every_unique_document_exactly_once(tmp_path, tok, tok_path):
    docs = make_documents()
    meta = build(tmp_path, tok_path, docs + docs[:3])  # three exact duplicates
    out = tmp_path / "data"
    train, val = split_documents(tok, out, "train"), split_documents(tok, out, "val")
    assert sorted(train + val) == sorted(docs)
    assert meta["documents"]["duplicates_dropped"] == 3
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.get_vocab_size()
    for name, found in (("train", train), ("val", val)):
        split = meta["splits"][name]
        assert split["documents"] == len(found) > 0
        assert (out / f"{name}.bin").stat().st_size == 2 * split["tokens"]
    on_disk = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert on_disk == meta
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_documents_sharing_a_long_paragraph_stay_on_one_side(tmp_path, tok, tok_path):
    docs = make_documents(n_companies=6, per_company=5)
    meta = build(tmp_path, tok_path, docs, val_fraction=0.3)
    assert meta["documents"]["groups"] == 6
    assert meta["documents"]["grouped_documents"] == 30
    val = set(split_documents(tok, tmp_path / "data", "val"))
    for c in range(6):
        company = docs[c * 5 : (c + 1) * 5]
        assert len({d in val for d in company}) == 1, f"company {c} was split across train/val"


def test_split_is_deterministic_order_independent_and_seeded(tmp_path, tok, tok_path):
    docs = make_documents(n_companies=6, per_company=3)
    common = {"val_fraction": 0.4, "group_min_chars": 0}  # every document its own group
    build(tmp_path, tok_path, docs, name="a", **common)
    build(tmp_path, tok_path, docs, name="b", **common)
    shuffled = random.Random(0).sample(docs, len(docs))
    build(tmp_path, tok_path, shuffled, name="c", **common)
    build(tmp_path, tok_path, docs, name="d", seed=7, **common)
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("train.bin", "val.bin"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    val = {n: set(split_documents(tok, tmp_path / n, "val")) for n in "acd"}
    assert val["a"] == val["c"]
    assert val["a"] != val["d"]


def test_tiny_corpus_still_gets_a_validation_split(tmp_path, tok, tok_path):
    docs = make_documents(n_companies=4, per_company=1)
    meta = build(tmp_path, tok_path, docs, val_fraction=0.01, block_size=8)
    assert meta["splits"]["val"]["documents"] >= 1
    assert meta["splits"]["val"]["tokens"] >= 4 * 9 or meta["splits"]["val"]["documents"] >= 2
    assert meta["splits"]["train"]["tokens"] > meta["splits"]["val"]["tokens"]


def test_val_too_small_for_one_window_is_an_error_and_publishes_nothing(tmp_path, tok, tok_path):
    docs = make_documents(n_companies=2, per_company=1)
    with pytest.raises(DataError) as err:
        build(tmp_path, tok_path, docs, block_size=100_000)
    assert "block_size+1 = 100,001" in err.value.message
    assert "--val-fraction" not in err.value.hint  # the corpus is short, not the fraction wrong
    assert list((tmp_path / "data").iterdir()) == []  # no bins, no temp files
    # The hint names a block size that works.
    found = re.search(r"--block-size to at most ([\d,]+)", err.value.hint)
    assert found, err.value.hint
    build(tmp_path, tok_path, docs, name="fixed", block_size=int(found[1].replace(",", "")))


def test_a_val_fraction_that_leaves_train_too_small_suggests_a_smaller_one(tmp_path, tok_path):
    docs = make_documents()
    with pytest.raises(DataError) as err:
        build(tmp_path, tok_path, docs, val_fraction=0.99)
    assert "the train split has only" in err.value.message
    hint = err.value.hint
    assert "--val-fraction" in hint and "0.99" in hint and "--block-size" not in hint
    assert "of the 30 documents" in hint  # the actual numbers
    build(tmp_path, tok_path, docs, name="fixed", val_fraction=0.05)  # the suggested default


def test_one_posting_per_line_is_one_document_and_the_hint_says_how_to_separate(tmp_path, tok_path):
    docs = [d.replace("\n", " ") for d in make_documents(n_companies=3, per_company=1)]
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(docs) + "\n", encoding="utf-8")  # no blank line between them
    values = {"input": [str(corpus)], "tokenizer": str(tok_path), "out_dir": str(tmp_path / "d")}
    with pytest.raises(DataError) as err:
        run(make_config(DatasetConfig, {**values, "block_size": 16}))
    assert "lines.txt" in err.value.message and "only 1 document" in err.value.message
    hint = err.value.hint
    assert "--group-min-chars" not in hint  # grouping is not the cause: it would change nothing
    assert "2+ blank lines" in hint and EOT in hint and ".jsonl" in hint
    corpus.write_text("\n\n\n".join(docs) + "\n", encoding="utf-8")  # follow the hint
    meta = run(make_config(DatasetConfig, {**values, "block_size": 16}))
    assert meta["documents"]["kept"] == 3


def test_a_single_group_cannot_be_split(tmp_path, tok_path):
    docs = make_documents(n_companies=1, per_company=4)
    with pytest.raises(DataError) as err:
        build(tmp_path, tok_path, docs)
    assert "all 4 documents form one group" in err.value.message
    assert "share" in err.value.message and "--group-min-chars 0" in err.value.hint
    assert "blank lines" not in err.value.hint  # separators are not the cause here
    meta = build(tmp_path, tok_path, docs, name="ungrouped", group_min_chars=0, block_size=4)
    assert meta["splits"]["val"]["documents"] >= 1


def test_cli_reports_a_missing_tokenizer_without_traceback(tmp_path, capsys):
    from jobgpt.cli import main

    corpus = write_corpus(tmp_path / "c.jsonl", make_documents(2, 2))
    code = main(["dataset", "--input", str(corpus), "--tokenizer", str(tmp_path / "t.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: tokenizer not found" in err and "scripts/train_tokenizer.py" in err
    assert "Traceback" not in err


def test_token_dtype_switches_to_uint32_above_65536():
    assert token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32


def test_large_vocabulary_is_stored_as_uint32(tmp_path):
    tok = train_tokenizer(make_documents(2, 2), vocab_size=400)
    tok.add_tokens([f"w{i}" for i in range(66_000)])  # ids beyond the uint16 range
    path = save_tokenizer(tok, tmp_path / "big.json")
    docs = [f"긴 어휘 w65999 테스트 {i}" + " 본문" * 20 for i in range(12)]
    meta = build(tmp_path, path, docs, block_size=8, val_fraction=0.2)
    assert meta["dtype"] == "uint32"
    ids = np.concatenate([np.fromfile(tmp_path / "data" / f, np.uint32) for f in BINS])
    assert tok.token_to_id("w65999") in ids
    assert sorted(
        split_documents(tok, tmp_path / "data", "train")
        + split_documents(tok, tmp_path / "data", "val")
    ) == sorted(docs)


@pytest.fixture(scope="module")
def bins_dir(tok_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bins")
    build(tmp, tok_path, make_documents(), val_fraction=0.2)
    return tmp / "data"


def test_sample_batch_windows_are_shifted_by_one(bins_dir, tok):
    bins = TokenBins(bins_dir, tok)
    x, y = bins.sample_batch("train", 4, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all()
    train = np.asarray(bins.tokens["train"], np.int64)
    for row_x, row_y in zip(x, y, strict=True):
        starts = [i for i in range(len(train) - 16) if (train[i : i + 16] == row_x).all()]
        assert any((train[i + 1 : i + 17] == row_y).all() for i in starts)
    x2, _ = bins.sample_batch("train", 4, 16, np.random.default_rng(0))
    assert (x == x2).all()


def test_eval_windows_are_fixed_and_cover_a_small_split(bins_dir, tok):
    bins = TokenBins(bins_dir, tok)
    n_val = len(bins.tokens["val"])
    starts = bins.eval_starts("val", 16, max_windows=10_000)
    assert starts.tolist() == list(range(0, n_val - 16, 16))[: (n_val - 1) // 16]
    few = bins.eval_starts("train", 16, max_windows=5)
    assert len(few) == 5 and (few == bins.eval_starts("train", 16, max_windows=5)).all()
    x, y = bins.windows("val", starts, 16)
    assert x.shape == (len(starts), 16) and (x[:, 1:] == y[:, :-1]).all()


def test_reader_requires_bins(tmp_path):
    with pytest.raises(DataError) as err:
        TokenBins(tmp_path)
    assert "meta.json" in err.value.message
    assert "scripts/build_bin_dataset.py" in err.value.hint


def test_the_build_hint_names_a_data_dir_that_is_not_the_default(tmp_path, monkeypatch):
    # The dataset stage writes to data/ unless told otherwise: the command must say where.
    mine = tmp_path / "mybins"
    mine.mkdir()
    with pytest.raises(DataError) as err:
        TokenBins(mine)
    # no meta.json to say what the inputs were: a placeholder, never the demo corpus
    assert f"build_bin_dataset.py --input YOUR_CORPUS_FILES --out-dir {mine}`" in err.value.hint
    monkeypatch.chdir(tmp_path)
    for default in ("data", "data/", "./data"):
        with pytest.raises(DataError) as err:
            load_meta(default)
        assert "scripts/build_bin_dataset.py`" in err.value.hint, default


def test_reader_rejects_truncated_bins(bins_dir, tok, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("meta.json", *BINS):
        (copy / name).write_bytes((bins_dir / name).read_bytes())
    (copy / "val.bin").write_bytes((bins_dir / "val.bin").read_bytes()[:-2])
    with pytest.raises(DataError, match="val.bin has .* bytes but meta.json promises") as err:
        TokenBins(copy, tok)
    assert (
        err.value.hint.startswith("rebuild them")
        and f"--out-dir {copy} --overwrite`" in err.value.hint
    )
    assert "--input" in err.value.hint and "--tokenizer" in err.value.hint


def test_the_rebuild_hint_runs_as_printed_and_rebuilds_the_users_bins(
    tmp_path, tok, tok_path, monkeypatch
):
    """A damaged bin's hint, run verbatim from the same directory, rebuilds the same bins from
    the user's own corpus (it used to fall back to the demo corpus in data/samples.txt)."""
    monkeypatch.chdir(tmp_path)
    build(tmp_path, tok_path, make_documents(), name="mine", seed=7, val_fraction=0.2)
    good = {name: (tmp_path / "mine" / name).read_bytes() for name in BINS}
    (tmp_path / "mine" / "train.bin").write_bytes(good["train.bin"][:-2])
    with pytest.raises(DataError) as err:
        TokenBins(tmp_path / "mine", tok)
    command = err.value.hint.split("`")[1]
    assert command.startswith("uv run python scripts/build_bin_dataset.py --input ")
    assert "--seed 7" in command and "--val-fraction 0.2" in command
    args = shlex.split(command.removeprefix("uv run python "))
    args[0] = str(REPO / args[0])
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    assert {name: (tmp_path / "mine" / name).read_bytes() for name in BINS} == good
    assert not (tmp_path / "data").exists()  # no demo corpus written anywhere


@pytest.mark.parametrize(
    "edit, field",
    [
        ({"dtype": "float64"}, "dtype"),
        ({"vocab_size": "many"}, "vocab_size"),
        ({"splits": {}}, "splits.train.tokens"),
        ({"tokenizer": None}, "tokenizer.path"),
    ],
)
def test_a_hand_edited_meta_json_is_named_not_a_traceback(bins_dir, tok, tmp_path, edit, field):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in BINS:
        (copy / name).write_bytes((bins_dir / name).read_bytes())
    meta = {**json.loads((bins_dir / "meta.json").read_text()), **edit}
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"invalid {field}") as err:
        TokenBins(copy, tok)
    assert "edited or damaged" in err.value.message and "rebuild them" in err.value.hint


def test_a_missing_tokenizer_stops_before_the_demo_corpus_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default input data/samples.txt does not exist here
    with pytest.raises(DataError, match="tokenizer not found"):
        run(make_config(DatasetConfig, {"tokenizer": str(tmp_path / "none.json")}))
    assert not (tmp_path / "data" / "samples.txt").exists()


def test_reader_rejects_another_tokenizer(bins_dir):
    other = train_tokenizer(["전혀 다른 말뭉치입니다"] * 30, vocab_size=300)
    with pytest.raises(DataError, match="another tokenizer"):
        TokenBins(bins_dir, other)


def test_reader_names_both_numbers_when_a_split_is_too_short(bins_dir, tok):
    bins = TokenBins(bins_dir, tok)
    n_val = len(bins.tokens["val"])
    with pytest.raises(DataError) as err:
        bins.sample_batch("val", 2, n_val, np.random.default_rng(0))
    assert f"{n_val:,} tokens" in err.value.message
    assert f"block_size {n_val:,}" in err.value.message


def test_groups_root_is_the_smallest_key_in_any_order():
    for order in ([[5, 3], [3, 9], [7]], [[7], [9, 3], [3, 5]]):
        groups = Groups()
        for keys in order:
            groups.link(keys)
        assert {groups.find(k) for k in (3, 5, 9)} == {3}
        assert groups.find(7) == 7 and groups.find(42) == 42


@pytest.mark.slow
def test_real_postings_keep_shared_paragraphs_on_one_side(tmp_path):
    from jobgpt.corpus import iter_documents
    from jobgpt.splits import paragraph_fingerprints

    path = SHARED_DATA / "wanted" / "postings.jsonl"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    docs = [doc.text for doc in iter_documents([str(path)])]
    tok = train_tokenizer(docs, vocab_size=2_000)
    tok_path = save_tokenizer(tok, tmp_path / "tokenizer.json")
    cfg = {"input": [str(path)], "tokenizer": str(tok_path), "out_dir": str(tmp_path / "data")}
    meta = run(make_config(DatasetConfig, cfg))
    assert meta["documents"]["grouped_documents"] > len(docs) / 3  # company intros repeat
    val = set(split_documents(tok, tmp_path / "data", "val"))
    assert 0.02 < len(val) / len(docs) < 0.10
    sides: dict[int, set[bool]] = {}
    for doc in docs:
        for fp in paragraph_fingerprints(doc, 100):
            sides.setdefault(fp, set()).add(doc in val)
    assert all(len(s) == 1 for s in sides.values())
