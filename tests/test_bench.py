"""bench/run_all.py: a --quick run writes the JSON and markdown report with every stage's figures
(the serve stage against a real `jobgpt serve`) and the machine fields, and a failing bench
becomes a "failed" row, not a crash. Timings are data, not pass/fail: nothing here looks at how
fast anything was."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ONE_THREAD

from jobgpt.demo_corpus import write_demo_corpus

RUN_ALL = Path(__file__).resolve().parents[1] / "bench" / "run_all.py"
MACHINE_FIELDS = ("cpu_model", "cores", "torch", "device", "dtype")
EXPECTED = {
    "tokenizer": {"training time", "bytes/token (held-out 5%)"},
    "dataset": {"build throughput", "peak memory (RSS)"},
    "train": {"tokens/s", "text bytes/s", "achieved model FLOP/s"},
    "generate": {
        f"tokens/s, batch {batch}, {kind}" for batch in (1, 8) for kind in ("cached", "uncached")
    }
    | {"fraction of memory bandwidth, batch 1"},
    "serve": {"aggregate tokens/s, 1 client", "aggregate tokens/s, 8 clients"},
}


def load_run_all():
    if str(RUN_ALL.parent) not in sys.path:  # as when it runs as a script: bench/ modules import
        sys.path.insert(0, str(RUN_ALL.parent))
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_every_stage_with_machine_fields(tmp_path: Path) -> None:
    corpus = write_demo_corpus(tmp_path / "demo.txt", n=120, seed=7)
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(RUN_ALL), "--quick", "--corpus", str(corpus), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ONE_THREAD,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (json_path,) = out.glob("*.json")
    md_path = json_path.with_suffix(".md")
    report = json.loads(json_path.read_text(encoding="utf-8"))
    table = md_path.read_text(encoding="utf-8")
    assert proc.stdout == table  # the table is printed too
    assert report["machine"] == json_path.stem
    assert report["quick"] is True and report["corpus"] == str(corpus)
    machine = report["machine_info"]
    assert machine["cpu_model"] and machine["cores"] >= 1 and machine["torch"]

    for stage, names in EXPECTED.items():
        status = report["stages"][stage]
        assert status["status"] == "ok", status.get("error")
        figures = {f["figure"]: f for f in report["figures"] if f["stage"] == stage}
        assert names <= set(figures), (stage, sorted(figures))
        for figure in figures.values():
            assert set(MACHINE_FIELDS) <= set(figure), figure
            assert isinstance(figure["value"], int | float), figure
            assert figure["cpu_model"] == machine["cpu_model"]
            assert figure["torch"] == machine["torch"]
            row = f"| {stage} | {figure['figure']} |"
            assert row in table

    train = report["stages"]["train"]["result"]
    dtype = train["dtype"]
    train_figures = {f["figure"]: f for f in report["figures"] if f["stage"] == "train"}
    # the fraction is taken against the peak in the trainer's own compute dtype
    assert train["peak_dtype"] == dtype
    assert {f"matmul peak ({dtype})", f"fraction of {dtype} peak"} <= set(train_figures)
    shapes = {f"fraction of {dtype} peak, square matmul", f"fraction of {dtype} peak, model's "
              "matmul shapes"}  # fmt: skip
    assert shapes <= set(train_figures)
    # the peak at the model's own shapes: one per distinct nn.Linear (qkv, proj, fc, head ...)
    assert len(train["matmul_shapes"]) >= 5 and train["matmul_shapes"][0]["name"] == "square"
    assert train["threads_chosen"] and train["busy"] is None  # no --busy here
    assert train_figures["tokens/s"]["dtype"] == dtype
    assert report["stages"]["dataset"]["peak_rss_mib"] > 0
    # the serve stage: a real server, 1 and 8 streamed clients, every token counted
    serve = report["stages"]["serve"]["result"]
    assert serve["machine"]["cpu_model"] == machine["cpu_model"] and serve["model"]["n_layer"]
    for run in serve["runs"]:
        tokens = run["completion_tokens"]
        assert 0 < tokens["min"] <= tokens["max"] <= serve["max_tokens"], run
        assert tokens["total"] > 0 and run["ttft_s"]["median"] > 0 and run["new_request_ttft_s"] > 0
    assert {run["clients"] for run in serve["runs"]} == {1, 8}
    assert "aggregate_8_over_1" in serve and "targets_met" in serve
    assert machine["cpu_model"] in table and machine["torch"] in table


def test_a_failing_bench_is_a_failed_row(tmp_path: Path) -> None:
    run_all = load_run_all()
    stage = run_all.run_bench("no_such_stage", [], timeout=60, tmp=tmp_path)
    assert stage["status"] == "failed" and stage["error"]  # python's "can't open file" line
    (row,) = run_all.stage_rows("train", stage)
    assert row["figure"] == "failed" and row["note"] == stage["error"]
    machine = run_all.machine_info()
    report = {
        "machine": machine["machine"],
        "machine_info": machine,
        "started": "now",
        "quick": True,
        "corpus": "none",
        "figures": [dict(row, **run_all.figure_context(machine))],
        "stages": {"train": stage},
    }
    assert "| train | failed | **failed** |" in run_all.markdown(report)


def test_machine_slug_is_filesystem_safe() -> None:
    slug = load_run_all().machine_slug
    cpu = {"gpu": None, "gpu_count": 0, "cores": 8}
    name = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert slug({**cpu, "cpu_model": name}) == "intel-xeon-platinum-8375c-2-90ghz-8c"
    assert slug({**cpu, "cpu_model": "Apple M3 Pro"}) == "apple-m3-pro-8c"
    assert slug({**cpu, "gpu": "NVIDIA H200", "gpu_count": 1}) == "nvidia-h200"


@pytest.mark.parametrize("stage", ["train", "generate"])
def test_busy_runs_quiet_then_beside_a_busy_process(tmp_path: Path, stage: str) -> None:
    """--busy: both conditions in one JSON, with the threads chosen in each; the busy process
    is the bench's own and gone when it ends."""
    run_all = load_run_all()
    corpus = write_demo_corpus(tmp_path / "demo.txt", n=120, seed=7)
    args = run_all.bench_args(stage, str(corpus), quick=True, busy=True)
    if stage == "generate":
        args += ["--batches", "1", "--uncached-batches"]
    proc = subprocess.run(
        [sys.executable, str(RUN_ALL.parent / f"bench_{stage}.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ONE_THREAD,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = run_all.parse_json(proc.stdout)
    assert result["machine"]["cpu_model"] and result["dtype"]
    busy, quiet = result["busy"], result["quiet"]
    assert busy["threads"] >= 1 and quiet["threads"] >= 1
    assert busy["threads_chosen"] and quiet["threads_chosen"]
    assert result["busy_over_quiet"] and result["targets_met"]["busy>=0.5x_quiet"] is not None
    if stage == "train":
        assert busy["tokens_per_s"] > 0 and busy["fraction_of_peak"] > 0
    else:
        assert busy["tokens_per_s_batch1"] > 0 and busy["fraction_of_bandwidth"] > 0
        assert result["fraction_of_bandwidth"] > 0
    rows = run_all.stage_rows(stage, {"status": "ok", "result": result})
    assert any("busy" in r["figure"] for r in rows), rows


def load_sweep():
    spec = importlib.util.spec_from_file_location("sweep", RUN_ALL.parent / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_holds_out_whole_companies_so_boilerplate_cannot_leak(tmp_path: Path) -> None:
    # One company's postings share its intro word for word; split line by line, the held-out
    # file shared it with the train file and rewarded memorising it.
    lines = []
    for company in range(60):
        intro = f"회사 {company}번은 " + "함께 성장할 동료를 찾습니다. " * 8  # 100+ characters
        for job in range(5):
            posting = {
                "COMPANY": f"c{company}",
                "TITLE": f"개발자 {job}",
                "GROUP_INTRO": intro,
                "MAINDUTIES": f"업무 {job}\u2028(U+2028 inside a JSON string: not a line break)",
            }
            lines.append(json.dumps(posting, ensure_ascii=False))
    corpus = tmp_path / "postings.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    train, held_out = load_sweep().split_corpus(corpus, tmp_path / "work")

    def companies(path: Path) -> list[str]:
        return [json.loads(line)["COMPANY"] for line in path.read_text("utf-8").split("\n") if line]

    kept, held = companies(train), companies(held_out)
    assert sorted(kept + held) == sorted(json.loads(line)["COMPANY"] for line in lines)
    assert held and set(kept).isdisjoint(held)
    assert all(held.count(c) == 5 for c in set(held))  # whole companies, never one posting
