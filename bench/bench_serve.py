"""Serving speed: `jobgpt serve` under N concurrent streamed clients. Prints one JSON line.

    uv run python bench/bench_serve.py                 # reference model size, 1 and 8 clients
    uv run python bench/bench_serve.py --busy          # also with one busy process beside it
    uv run python bench/bench_serve.py --quick         # a tiny model: a smoke run, seconds

What it does, honestly: writes a checkpoint of the reference architecture (6 layers, 6 heads, 384
dims, context 256) with random weights and a tokenizer trained here on the demo corpus with vocab
24,000 requested (the model's vocabulary is what the tokenizer achieved, as `jobgpt train` does),
starts the real server on it (`python -m jobgpt serve`, loopback, a free port, the engine's
continuous batching with --max-batch at least the largest client count) and waits for /health.
Then, for each client count N, a round: N threads (httpx, one connection each) released together,
each sending one streamed /v1/completions request for --max-tokens tokens (temperature 0.8,
top-k 50, top-p 0.95, its own seed, `stream_options.include_usage` so the last chunk carries
usage.completion_tokens). Random weights almost never pick a stop token, but a request that stops
early counts only the tokens it got (`completion_tokens`, `finish_reasons` say so).

Per round: aggregate tokens/s = all clients' tokens / the round's wall time (first request sent
to last stream ended); per client tokens/s = its tokens / its own duration; TTFT = from sending
the request to the first chunk with text (the engine holds back the tokens of an unfinished
character, so this is the first token, or two or three for a character spelt in byte tokens).
Then a probe: N-1 clients stream, and once each has received a quarter of its tokens (16 chunks
at most) a NEW request is sent: its TTFT is `new_request_ttft_s`, and
`new_request_others_streaming` counts the N-1 still streaming when its first token came (N = 1:
an idle server). Each count runs --repeats rounds and probes, interleaved; figures are medians
over the rounds (TTFTs: over every client of every round), `best_aggregate_tokens_per_s` the best
round. One warm-up round first.

--busy runs every round and probe twice, once quiet and once with one busy process
(`python -c "while True: pass"`, started and stopped by the bench) beside the server, and reports
busy/quiet ratios. --server-threads N pins the server's decoding threads (`--threads N`, and
OMP_NUM_THREADS); default 0: the server chooses by measuring, and re-checks while it serves
(`threads_chosen` is its /health line at the end). The clients run in this process: they
take some CPU from the server too (JSON parsing per chunk), as real clients on one machine would.
Targets: 8 clients >= 3x one client's aggregate tokens/s; a new request's TTFT < 1 s while the
others stream; with one busy process >= half the quiet aggregate tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import torch
from busy import start_busy, stop  # bench/ is on sys.path when this file runs as a script
from run_all import machine_info

from jobgpt.checkpoint import save_checkpoint
from jobgpt.config import ModelConfig
from jobgpt.demo_corpus import generate_demo_corpus
from jobgpt.model import GPT
from jobgpt.tokenizer import tokenizer_sha256, train_tokenizer

PROMPT = "[QUESTION]\n이 구인 정보를 요약해줘.\n\n[POSTING]\n=== [카카오] 백엔드 개발자 채용 ===\n"
SAMPLING = {"temperature": 0.8, "top_k": 50, "top_p": 0.95}
# The reference shape, and --quick's: (demo documents, vocab requested, model config values)
FULL = (8_000, 24_000, {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256})
QUICK = (300, 1_000, {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128})
DEMO_SEED = 1337  # 8,000 demo documents are the fewest that give the whole 24,000 vocabulary
HEALTH_WAIT_S = 180
REQUEST_TIMEOUT_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="client counts")
    parser.add_argument("--max-tokens", type=int, help="tokens per request (128; quick 16)")
    parser.add_argument("--repeats", type=int, help="rounds per client count (3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="a tiny model: a smoke run")
    parser.add_argument("--busy", action="store_true", help="also run beside one busy process")
    parser.add_argument("--device", default="auto", help="the server's --device")
    parser.add_argument(
        "--server-threads", type=int, default=0, help="the server's --threads (0: it chooses)"
    )
    args = parser.parse_args()
    max_tokens = args.max_tokens or (16 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    clients = sorted(set(args.clients))
    if min(clients) < 1 or max_tokens < 1 or repeats < 1:
        parser.error("--clients, --max-tokens and --repeats must be at least 1")

    machine = machine_info()
    env = dict(os.environ)
    if args.server_threads:
        env["OMP_NUM_THREADS"] = str(args.server_threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jobgpt-bench-serve-") as tmp:
        start = time.perf_counter()
        checkpoint, model = write_checkpoint(Path(tmp) / "best.pt", args.quick)
        setup_s = time.perf_counter() - start
        server = Server(checkpoint, Path(tmp) / "server.log", args.device, max(8, *clients), env,
                        args.server_threads)  # fmt: skip
        busy: subprocess.Popen | None = None
        try:
            server_device = server.health()["device"]
            log(f"server up on {server_device} ({setup_s + server.startup_s:.1f} s)")
            bench = Bench(server, max_tokens)
            bench.round(max(clients), min(8, max_tokens))  # warm-up: allocator, threads, pages
            bench.round(1, min(8, max_tokens))
            modes = ("quiet", "busy") if args.busy else ("quiet",)
            rounds: dict[tuple[str, int], list[dict]] = {(m, n): [] for m in modes for n in clients}
            probes: dict[tuple[str, int], list[dict]] = {(m, n): [] for m in modes for n in clients}
            for rep in range(repeats):
                for mode in modes:
                    if mode == "busy":
                        busy = start_busy()
                    for n in clients:
                        rounds[mode, n].append(bench.round(n))
                        probes[mode, n].append(bench.probe(n))
                        log(f"{mode} {n} clients, round {rep + 1}/{repeats}: "
                            f"{rounds[mode, n][-1]['aggregate_tokens_per_s']} tokens/s, new "
                            f"request TTFT {probes[mode, n][-1]['ttft_s']} s")  # fmt: skip
                    if busy is not None:
                        stop(busy)
                        busy = None
            threads_chosen = server.health().get("threads")
        finally:
            if busy is not None:
                stop(busy)
            server.stop()

    c = model.config
    result: dict[str, Any] = {
        "bench": "serve",
        "machine": {k: machine[k] for k in ("cpu_model", "cores", "torch", "device", "gpu")},
        "device": server_device.split(" ")[0],
        "server_device": server_device,  # the server's own words: "cpu (2 threads)"
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "server_threads": server_threads(server_device),
        "threads_chosen": threads_chosen,  # the server's /health line: "1 thread (measured: ...)"
        "quick": args.quick,
        "model": {
            "weights": "random",
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_embd": c.n_embd,
            "block_size": c.block_size,
            "vocab_size": c.vocab_size,
            "vocab_requested": (QUICK if args.quick else FULL)[1],
            "params_m": round(model.num_params() / 1e6, 2),
        },
        "prompt_tokens": rounds["quiet", clients[0]][0]["prompt_tokens"],
        "max_tokens": max_tokens,
        "sampling": SAMPLING,
        "repeats": repeats,
        "setup_s": round(setup_s, 1),
        "server_startup_s": round(server.startup_s, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": [summary(n, rounds["quiet", n], probes["quiet", n]) for n in clients],
    }
    if args.busy:
        result["busy_runs"] = [summary(n, rounds["busy", n], probes["busy", n]) for n in clients]
    result.update(ratios(result, clients))
    print(json.dumps(result, ensure_ascii=False))


def log(message: str) -> None:
    print(f"[bench_serve] {message}", file=sys.stderr, flush=True)


def server_threads(device: str) -> int | None:
    """torch's CPU threads in the server, from /health's "cpu (2 threads)"; None on a GPU."""
    found = re.fullmatch(r"cpu \(([\d,]+) threads?\)", device)
    return int(found.group(1).replace(",", "")) if found else None


# --- the checkpoint and the server ---------------------------------------------------------------


def write_checkpoint(path: Path, quick: bool) -> tuple[Path, GPT]:
    """Random weights of the reference shape (or --quick's) and a demo-corpus tokenizer."""
    docs, vocab, shape = QUICK if quick else FULL
    tok = train_tokenizer(generate_demo_corpus(docs, DEMO_SEED), vocab_size=vocab)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.get_vocab_size(), dropout=0.0, **shape)).eval()
    info = {"json": tok.to_str(), "sha256": tokenizer_sha256(tok),
            "vocab_size": tok.get_vocab_size()}  # fmt: skip
    payload = {"model_config": asdict(model.config), "model": model.state_dict(),
               "tokenizer": info, "step": 0}  # fmt: skip
    save_checkpoint(payload, path)
    return path, model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m jobgpt serve` in a subprocess on a free loopback port, up once /health is 200."""

    def __init__(
        self,
        checkpoint: Path,
        log_path: Path,
        device: str,
        max_batch: int,
        env: dict[str, str],
        threads: int = 0,
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "jobgpt", "serve", "--checkpoint", str(checkpoint),
               "--port", self.url.rsplit(":", 1)[1], "--device", device,
               "--max-batch", str(max_batch), "--threads", str(threads)]  # fmt: skip
        env = {k: v for k, v in env.items() if k != "JOBGPT_API_KEY"}
        start = time.perf_counter()
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - start

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not come up in {HEALTH_WAIT_S} s: {self.log_tail()}")

    def log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " / ".join(lines[-5:]) or "no output"

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=10).json()

    def cpu_s(self) -> float | None:
        """The server's user + system CPU seconds so far (Linux), to see what share it got."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop(self.proc, wait_s=20)


# --- the clients ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, server: Server, max_tokens: int) -> None:
        self.server, self.max_tokens = server, max_tokens
        self.seed = 0

    def request(self, max_tokens: int) -> dict[str, Any]:
        self.seed += 1
        return {"prompt": PROMPT, "max_tokens": max_tokens, **SAMPLING, "seed": self.seed,
                "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip

    def round(self, n: int, max_tokens: int | None = None) -> dict[str, Any]:
        """n clients released together, each streaming one request to its end."""
        bodies = [self.request(max_tokens or self.max_tokens) for _ in range(n)]
        gate = threading.Barrier(n + 1, timeout=REQUEST_TIMEOUT_S)
        streams = [Stream(self.server.url, body, gate) for body in bodies]
        gate.wait()
        cpu_before = self.server.cpu_s()
        for s in streams:
            s.join()
        cpu_after = self.server.cpu_s()
        results = [s.result() for s in streams]
        wall = max(r["end"] for r in results) - min(r["sent"] for r in results)
        tokens = sum(r["tokens"] for r in results)
        cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        return {
            "aggregate_tokens_per_s": round(tokens / wall, 1),
            "wall_s": wall,
            "tokens": [r["tokens"] for r in results],
            "per_client_tokens_per_s": [r["tokens"] / (r["end"] - r["sent"]) for r in results],
            "ttft_s": [r["first"] - r["sent"] for r in results],
            "finish_reasons": [r["finish_reason"] for r in results],
            "prompt_tokens": results[0]["prompt_tokens"],
            "server_cpu_per_wall": None if cpu is None else cpu / wall,
        }

    def probe(self, n: int) -> dict[str, Any]:
        """n - 1 clients mid-stream, then a new request: its time to first token."""
        others = [Stream(self.server.url, self.request(self.max_tokens)) for _ in range(n - 1)]
        mid = max(1, min(16, self.max_tokens // 4))
        for s in others:
            s.wait_for_chunks(mid)
        new = Stream(self.server.url, self.request(self.max_tokens))
        new.join()
        for s in others:
            s.join()
        first = new.result()
        return {
            "ttft_s": round(first["first"] - first["sent"], 4),
            "others_streaming": sum(s.result()["end"] > first["first"] for s in others),
            "others": n - 1,
        }


class Stream(threading.Thread):
    """One client: one streamed completion, read chunk by chunk (its own connection)."""

    def __init__(self, url: str, body: dict, gate: threading.Barrier | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.gate = url, body, gate
        self.chunks = 0
        self.finished = False
        self.progress = threading.Condition()
        self.out: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
                if self.gate is not None:
                    self.gate.wait()
                self._stream(client)
        except BaseException as err:  # handed to result()
            self.error = err
        finally:
            with self.progress:
                self.finished = True
                self.progress.notify_all()

    def _stream(self, client: httpx.Client) -> None:
        out = self.out
        out["sent"] = time.perf_counter()
        with client.stream("POST", self.url + "/v1/completions", json=self.body) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"the stream failed: {chunk['error']}")
                if chunk.get("usage"):
                    out["tokens"] = chunk["usage"]["completion_tokens"]
                    out["prompt_tokens"] = chunk["usage"]["prompt_tokens"]
                for choice in chunk.get("choices") or []:
                    if "first" not in out:
                        out["first"] = time.perf_counter()
                    if choice.get("finish_reason"):
                        out["finish_reason"] = choice["finish_reason"]
                    with self.progress:
                        self.chunks += 1
                        self.progress.notify_all()
        out["end"] = time.perf_counter()

    def wait_for_chunks(self, n: int) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.chunks >= n or self.finished, REQUEST_TIMEOUT_S)

    def result(self) -> dict[str, Any]:
        self.join()
        if self.error is not None:
            raise RuntimeError(f"a client failed: {self.error}") from self.error
        missing = {"sent", "first", "end", "tokens"} - set(self.out)
        if missing:
            raise RuntimeError(f"the stream ended without {sorted(missing)}: {self.out}")
        return self.out


# --- the figures ---------------------------------------------------------------------------------


def summary(n: int, rounds: list[dict], probes: list[dict]) -> dict[str, Any]:
    """One client count's figures: medians over the rounds, TTFTs over every client."""
    ttfts = [t for r in rounds for t in r["ttft_s"]]
    per_client = [t for r in rounds for t in r["per_client_tokens_per_s"]]
    tokens = [t for r in rounds for t in r["tokens"]]
    new = [p["ttft_s"] for p in probes]
    cpu = [r["server_cpu_per_wall"] for r in rounds if r["server_cpu_per_wall"] is not None]
    return {
        "clients": n,
        "aggregate_tokens_per_s": round(
            statistics.median(r["aggregate_tokens_per_s"] for r in rounds), 1
        ),  # fmt: skip
        "best_aggregate_tokens_per_s": max(r["aggregate_tokens_per_s"] for r in rounds),
        "rounds_aggregate_tokens_per_s": [r["aggregate_tokens_per_s"] for r in rounds],
        "round_wall_s": round(statistics.median(r["wall_s"] for r in rounds), 3),
        "per_client_tokens_per_s": {
            "median": round(statistics.median(per_client), 1),
            "min": round(min(per_client), 1),
        },
        "ttft_s": {"median": round(statistics.median(ttfts), 4), "max": round(max(ttfts), 4)},
        "new_request_ttft_s": round(statistics.median(new), 4),
        "new_request_ttft_max_s": max(new),
        "new_request_others": n - 1,
        "new_request_others_streaming": min(p["others_streaming"] for p in probes),
        "completion_tokens": {"min": min(tokens), "max": max(tokens), "total": sum(tokens)},
        "finish_reasons": dict(Counter(f for r in rounds for f in r["finish_reasons"])),
        "server_cpu_per_wall": round(statistics.median(cpu), 2) if cpu else None,
    }


def ratios(result: dict[str, Any], clients: list[int]) -> dict[str, Any]:
    """aggregate(most clients) / aggregate(1 client), busy / quiet, and the targets."""
    quiet = {run["clients"]: run for run in result["runs"]}
    lo, hi = clients[0], clients[-1]
    gain = quiet[hi]["aggregate_tokens_per_s"] / quiet[lo]["aggregate_tokens_per_s"]
    out: dict[str, Any] = {f"aggregate_{hi}_over_{lo}": round(gain, 2)}
    busiest = quiet[hi]
    targets = {
        f"aggregate_{hi}_over_{lo}>=3": gain >= 3,
        "new_request_ttft<1s": busiest["new_request_ttft_max_s"] < 1.0
        and busiest["new_request_others_streaming"] == busiest["new_request_others"],
    }
    if "busy_runs" in result:
        share = {
            str(run["clients"]): round(
                run["aggregate_tokens_per_s"] / quiet[run["clients"]]["aggregate_tokens_per_s"], 2
            )
            for run in result["busy_runs"]
        }
        out["busy_over_quiet"] = share
        targets["busy>=0.5x_quiet"] = all(v >= 0.5 for v in share.values())
        busy_hi = {run["clients"]: run for run in result["busy_runs"]}[hi]
        targets["busy_new_request_ttft<1s"] = busy_hi["new_request_ttft_max_s"] < 1.0
    out["targets_met"] = targets
    return out


if __name__ == "__main__":
    main()
