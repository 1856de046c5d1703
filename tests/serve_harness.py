"""A tiny `jobgpt serve` for tests: two checkpoints built here and the server in a subprocess.

One model has memorised a question-answer example (greedy decoding gives known Korean text, with
a syllable spelled in byte tokens); the other repeats one Korean token forever (for disconnects,
time limits, load and the web page's stop button). Used by test_serve.py and test_web.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from tokenizers import Tokenizer

from jobgpt.checkpoint import save_checkpoint
from jobgpt.config import ModelConfig
from jobgpt.model import GPT
from jobgpt.qa import EOT, format_qa_document
from jobgpt.tokenizer import tokenizer_sha256, train_tokenizer

QUESTION = "이 구인 정보를 요약해줘."
# 뷁 is a syllable no text uses: the small vocabulary spells it in three byte tokens, so its
# text exists only once all three are generated (a character split across tokens).
DOC = (
    "=== [뷁카오] 백엔드 개발자 채용 ===\n회사명: 뷁카오\n위치: 서울 강남구\n자격 요건: 파이썬 3년"
)
ANSWER = "요약:\n- 회사: 뷁카오\n- 위치: 서울 강남구\n\n연락처(공공정보):\n- TEL: 02-123-4567"
EXAMPLE = format_qa_document(QUESTION, DOC, ANSWER)
PROMPT = "[QUESTION]\n이 구인"  # its greedy continuation is the rest of EXAMPLE
RUNAWAY_TEXTS = [
    "서울에서 백엔드 개발자를 채용합니다. 경력 3년 이상.",
    "부산 물류센터 관리자 모집",
] * 20


def write_checkpoint(path: Path, model: GPT, tok: Tokenizer) -> Path:
    info = {
        "json": tok.to_str(),
        "sha256": tokenizer_sha256(tok),
        "vocab_size": tok.get_vocab_size(),
    }
    history = [{"step": 150, "train_loss": 0.05, "val_loss": 0.25, "val_bpb": 0.5}]
    payload = {
        "model_config": asdict(model.config),
        "model": model.state_dict(),
        "tokenizer": info,
        "step": 150,
        "monitor": {"history": history},
        "data": {"dir": "/secret/data", "train_tokens": 1234, "val_tokens": 56},
    }
    save_checkpoint(payload, path)
    return path


def memorised_checkpoint(path: Path) -> Path:
    """A model that has learnt EXAMPLE by heart, between two <|endoftext|>."""
    tok = train_tokenizer([EXAMPLE, "hello world"], vocab_size=300, min_frequency=1)
    eot = tok.token_to_id(EOT)
    ids = [eot, *tok.encode(EXAMPLE).ids, eot]
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tok.get_vocab_size(), block_size=2 * len(ids), n_layer=2,
                         n_head=2, n_embd=48, dropout=0.0)  # fmt: skip
    model = GPT(config)
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    return write_checkpoint(path, model.eval(), tok)


def runaway_checkpoint(path: Path) -> Path:
    """A model that writes one Korean token forever: never a stop token.

    With the final LayerNorm's weight at zero its output is its bias, so the logits are
    tok_emb @ bias at every position; a bias along the token's (tied) embedding makes it win.
    """
    tok = train_tokenizer(RUNAWAY_TEXTS, vocab_size=320)
    texts = tok.decode_batch([[i] for i in range(tok.get_vocab_size())])
    hangul = next(i for i, t in enumerate(texts) if re.fullmatch("[가-힣]+", t))
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tok.get_vocab_size(), block_size=128, n_layer=4, n_head=2,
                         n_embd=256, dropout=0.0)  # fmt: skip
    model = GPT(config).eval()
    with torch.no_grad():
        e = model.tok_emb.weight[hangul]
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(1000 * e / e.dot(e))
    return write_checkpoint(path, model, tok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`jobgpt serve` in a subprocess; `url` once /health says ok."""

    def __init__(self, checkpoint: Path, log: Path, *flags: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "jobgpt", "serve", "--checkpoint", str(checkpoint),
               "--port", str(self.port), "--device", "cpu", *flags]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if k != "JOBGPT_API_KEY"}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT,
                env={**base, "OMP_NUM_THREADS": "1", **(env or {})},
            )  # fmt: skip
        self._wait_healthy()

    def _wait_healthy(self, limit_s: float = 90) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not come up:\n{self.log.read_text()}")

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=5).json()

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serving(
    factory: pytest.TempPathFactory, name: str, checkpoint: Callable[[Path], Path], *flags: str
) -> Iterator[Server]:
    """For a module fixture: a server on a fresh checkpoint, stopped afterwards."""
    root = factory.mktemp(name)
    running = Server(checkpoint(root / "best.pt"), root / "server.log", *flags)
    yield running
    running.stop()


def wait_idle(server: Server, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        health = server.health()
        if health["active"] == 0 and health["queued"] == 0:
            return True
        time.sleep(0.02)
    return False
