"""The package's shape, as a reviewer would check it: imports flow one way, files stay small.

Each module may import only modules listed before it in LAYERS (lazy imports inside functions
count too), so there are no import circles and nothing imports upward: a stage never reaches
into the CLI, the model never into training. A new module must be placed in this list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "jobgpt"

LAYERS = [
    # foundations: no jobgpt imports beyond each other
    "__init__",
    "errors",
    "files",
    "progress",
    "commands",
    "checks",
    "presets",
    "config",
    # text: formats, inputs, corpora
    "qa",
    "postings",
    "inputs",
    "textfile",
    "records",
    "corpus",
    "demo_postings",
    "demo_corpus",
    # tokens
    "tokenizer",
    "bins",
    "splits",
    "dataset",
    "batching",
    # the model and where it runs
    "model",
    "modern",
    "architectures",
    "optim",
    "precision",
    "runtime",
    "threads",
    "loss_eval",
    "checkpoint",
    # training
    "monitor",
    "metrics",
    "resume",
    "report",
    "trainer",
    "train",
    # using a model
    "sampling",
    "streaming",
    "generator",
    "generate",
    "engine",
    # measuring and exporting a model
    "eval_text",
    "eval_qa",
    "eval_gen",
    "evaluate",
    "export_qwen3",
    "export",
    # serving a model over HTTP (`jobgpt serve`)
    "serve_schemas",
    "serve_metrics",
    "serve_stream",
    "serve_api",
    "serve_routes",
    "serve",
    # the command line
    "demo",
    "stages",
    "cli",
    "__main__",
]
MAX_LINES = 420  # "a file you can hold in your head": ~400 lines


def modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}


def jobgpt_imports(path: Path) -> set[str]:
    """The jobgpt modules `path` imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "jobgpt":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from jobgpt import config, runtime
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "jobgpt" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_module_has_a_place_in_the_layers() -> None:
    assert sorted(set(modules()) - set(LAYERS)) == [], "add new modules to LAYERS"


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_flow_one_way(name: str) -> None:
    rank = {module: i for i, module in enumerate(LAYERS)}
    upward = sorted(
        imported
        for imported in jobgpt_imports(modules()[name])
        if imported in rank and rank[imported] >= rank[name]
    )
    assert upward == [], f"{name} imports {upward}, which come after it in LAYERS"


@pytest.mark.parametrize("name", sorted(modules()))
def test_files_stay_small(name: str) -> None:
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name}.py has {lines} lines"
