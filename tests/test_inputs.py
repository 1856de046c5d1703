"""Finding the input files: directories, globs, the files skipped (and logged), and the errors
of inputs that name no corpus file. Reading the files is tested in test_corpus.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import error_for, texts, write

from jobgpt.cli import main
from jobgpt.errors import InputError
from jobgpt.inputs import pipeline_output, resolve_inputs
from jobgpt.stages import run_stage

# --- choosing files ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "corpus" / "b.txt", "B\n")
    write(tmp_path / "corpus" / "a.md", "A\n")
    write(tmp_path / "corpus" / "sub" / "c.jsonl", '{"text": "C"}\n')
    write(tmp_path / "corpus" / ".git" / "x.txt", "hidden\n")
    write(tmp_path / "corpus" / "model.bin", b"\x00\x01")
    write(tmp_path / "corpus" / "notes.log", "not a corpus extension\n")
    return tmp_path / "corpus"


def test_directory_is_searched_recursively_and_sorted(tree: Path) -> None:
    assert resolve_inputs([str(tree)]) == [tree / "a.md", tree / "b.txt", tree / "sub" / "c.jsonl"]
    assert texts(tree) == ["A", "B", "C"]


def test_globs_and_several_inputs_keep_order_without_duplicates(tree: Path) -> None:
    files = resolve_inputs([str(tree / "sub" / "c.jsonl"), str(tree / "*.txt"), str(tree)])
    assert files == [tree / "sub" / "c.jsonl", tree / "b.txt", tree / "a.md"]
    assert resolve_inputs([str(tree / "**" / "*.jsonl")]) == [tree / "sub" / "c.jsonl"]


def skipped_lines(caplog) -> list[str]:
    return [r.message for r in caplog.records if r.message.startswith("skipped")]


def test_a_directory_names_the_files_it_skips_for_their_extension(tmp_path: Path, caplog) -> None:
    mix = tmp_path / "dirmix"
    write(mix / "postings.txt", "채용 공고\n")
    for name in ("notes.docx", "공고.hwp", "scan.pdf"):
        write(mix / name, b"PK\x03\x04")
    write(mix / ".DS_Store", b"\x00")
    write(mix / ".git" / "config", "[core]\n")
    with caplog.at_level(logging.INFO, logger="jobgpt.inputs"):
        assert texts(mix) == ["채용 공고"]
    [line] = skipped_lines(caplog)
    assert line.startswith("skipped 3 file(s) with unsupported extensions: ")
    for name in ("notes.docx", "공고.hwp", "scan.pdf"):
        assert str(mix / name) in line
    assert "convert them to .txt/.jsonl/.csv" in line and "한글" in line  # the .hwp tip
    assert ".DS_Store" not in caplog.text and ".git" not in caplog.text  # hidden: silent


def test_many_skipped_files_are_summarised_and_outputs_keep_their_own_line(
    tmp_path: Path, caplog
) -> None:
    write(tmp_path / "d" / "a.txt", "A\n")
    write(tmp_path / "d" / "train.bin", b"\x00\x01")
    for i in range(7):
        write(tmp_path / "d" / f"scan{i}.pdf", b"%PDF")
    with caplog.at_level(logging.INFO, logger="jobgpt.inputs"):
        assert texts(tmp_path / "d") == ["A"]
    outputs, unsupported = skipped_lines(caplog)
    assert outputs.startswith("skipped 1 jobgpt output file(s)") and "train.bin" in outputs
    assert unsupported.startswith("skipped 7 file(s) with unsupported extensions")
    assert "scan4.pdf (+2 more) — convert" in unsupported and "scan5" not in unsupported


def test_a_directory_of_only_unsupported_files_says_what_to_convert(tmp_path: Path) -> None:
    write(tmp_path / "d" / "공고.hwp", b"HWP Document File")
    err = error_for(tmp_path / "d")
    assert "holds no corpus files" in err.message and "공고.hwp" in err.message
    assert "convert them to .txt/.jsonl/.csv" in err.hint


# --- the pipeline's own outputs beside the corpus ----------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `jobgpt demo-data`, `tokenizer` and `dataset` leave in one directory, by the real
    stages: samples.txt, tokenizer.json, meta.json, train.bin, val.bin."""
    root = tmp_path_factory.mktemp("data")
    corpus, tok = str(root / "samples.txt"), str(root / "tokenizer.json")
    run_stage("demo-data", {"out": corpus, "n": 30})
    run_stage("tokenizer", {"input": [corpus], "vocab_size": 400, "out": tok})
    run_stage("dataset", {"input": [corpus], "tokenizer": tok, "out_dir": str(root)})
    return root


OUTPUTS = ("meta.json", "tokenizer.json", "train.bin", "val.bin")


def test_a_directory_or_glob_skips_the_pipelines_outputs(data_dir: Path, caplog) -> None:
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([*OUTPUTS, "samples.txt"])
    assert resolve_inputs([str(data_dir)]) == [data_dir / "samples.txt"]
    assert resolve_inputs([str(data_dir / "*")]) == [data_dir / "samples.txt"]
    caplog.clear()  # the two calls above may have logged too (if jobgpt's level is INFO already)
    with caplog.at_level(logging.INFO, logger="jobgpt.inputs"):
        assert texts(data_dir / "*")
    [line] = [r.message for r in caplog.records if "skipped" in r.message]
    for name in OUTPUTS:
        assert str(data_dir / name) in line
    assert "(tokenizer)" in line and "(dataset meta)" in line


def test_pipeline_output_says_what_each_output_is(data_dir: Path, tmp_path: Path) -> None:
    kinds = {name: pipeline_output(data_dir / name) for name in (*OUTPUTS, "samples.txt")}
    assert kinds == {
        "meta.json": "dataset meta",
        "tokenizer.json": "tokenizer",
        "train.bin": "token bins",
        "val.bin": "token bins",
        "samples.txt": None,
    }
    metrics = write(tmp_path / "metrics.jsonl", "")  # `jobgpt train` starts it empty
    assert pipeline_output(metrics) == "training metrics"
    write(metrics, json.dumps({"kind": "step", "step": 1, "loss": 2.5}) + "\n")
    assert pipeline_output(metrics) == "training metrics"


def test_the_tokenizer_stage_runs_on_a_data_dir_holding_its_outputs(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tokenizer.json"
    flags = ["--input", str(data_dir), "--vocab-size", "400", "--out", str(out)]
    assert main(["tokenizer", *flags]) == 0
    # The same corpus, so the same tokenizer: tokenizer.json and meta.json were not read as text.
    assert out.read_bytes() == (data_dir / "tokenizer.json").read_bytes()


def test_an_output_named_explicitly_is_not_skipped(data_dir: Path) -> None:
    err = error_for(data_dir / "tokenizer.json")
    assert "tokenizer.json" in err.message and "jobgpt output (tokenizer)" in err.message
    assert "meta.json" in error_for(data_dir / "meta.json").message
    assert "unknown format" in error_for(data_dir / "train.bin").message


def test_a_users_own_meta_json_and_tokenizer_named_files_are_read(tmp_path: Path) -> None:
    # Our files are recognised by content: a corpus that merely shares a name is a corpus.
    posting = {"title": "백엔드 개발자", "company": "한빛소프트", "duties": "API 개발"}
    write(tmp_path / "d" / "meta.json", json.dumps({"format_version": 3, "postings": [posting]}))
    write(tmp_path / "d" / "tokenizer.json", json.dumps([{"text": "토크나이저 공고"}]))
    write(tmp_path / "d" / "metrics.jsonl", '{"text": "지표 분석가 채용"}\n')
    files = resolve_inputs([str(tmp_path / "d")])
    assert [p.name for p in files] == ["meta.json", "metrics.jsonl", "tokenizer.json"]
    assert len(texts(tmp_path / "d")) == 3


def test_a_directory_holding_only_outputs_says_so(data_dir: Path, tmp_path: Path) -> None:
    only = tmp_path / "only"
    only.mkdir()
    for name in ("meta.json", "tokenizer.json"):
        (only / name).write_bytes((data_dir / name).read_bytes())
    err = error_for(only)
    assert "holds no corpus files" in err.message and "tokenizer.json (tokenizer)" in err.message


# --- inputs that name no corpus file ---------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    err = error_for(tmp_path / "nope.txt")
    assert "nope.txt" in err.message and "no such file" in err.message


def test_glob_matching_nothing(tmp_path: Path) -> None:
    assert "*.jsonl" in error_for(tmp_path / "*.jsonl").message


def test_directory_without_corpus_files(tmp_path: Path) -> None:
    write(tmp_path / "d" / "x.bin", b"\x00")
    assert str(tmp_path / "d") in error_for(tmp_path / "d").message


def test_no_input_at_all() -> None:
    with pytest.raises(InputError):
        resolve_inputs([])
