"""Generation: sampling rules, KV cache = no cache, stops, QA prompts, bad inputs, the CLI."""

import copy
import io
import json
import logging
import os
import subprocess
import sys
import tracemalloc
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from jobgpt import sampling, threads
from jobgpt.checkpoint import save_checkpoint
from jobgpt.commands import command
from jobgpt.config import DEFAULT_NUM_SAMPLES, GenerateConfig, ModelConfig
from jobgpt.errors import CheckpointError, ConfigError, InputError
from jobgpt.generate import (
    DEFAULT_QUESTION,
    MAX_DOC_BYTES,
    SamplePrinter,
    build_prompt,
    read_doc,
)
from jobgpt.generator import DOC_CUT, Piece, TextGenerator
from jobgpt.model import GPT
from jobgpt.qa import ANSWER_END, EOT, build_qa_prompt, format_qa_document
from jobgpt.sampling import ContextWindow, generate_tokens, penalize_repetition, sample_next
from jobgpt.stages import run_stage
from jobgpt.tokenizer import tokenizer_sha256, train_tokenizer

REPO = Path(__file__).resolve().parents[1]

QUESTION = "이 구인 정보를 요약해줘."
# 뷁 is a syllable no real text uses: with the small vocabulary below, most Korean is spelled in
# byte tokens, so these tests also exercise byte-fallback streaming.
DOC = "=== [뷁카오] 백엔드 개발자 채용 ===\n회사명: 뷁카오\n자격 요건: 파이썬 3년"
ANSWER = "요약:\n- 회사: 뷁카오\n- 자격: 파이썬 3년"
EXAMPLE = format_qa_document(QUESTION, DOC, ANSWER)
CORPUS = [EXAMPLE, "=== [네이버] 프론트엔드 개발자 채용 ===\n우대 사항: React\n\nhello world"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=300, min_frequency=1)


def tiny_model(tok: Tokenizer, block_size: int = 32, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        block_size=block_size,
        n_layer=2,
        n_head=2,
        n_embd=32,
        dropout=0.0,
    )
    return GPT(config).eval()


@pytest.fixture(scope="module")
def gen(tok: Tokenizer) -> TextGenerator:
    return TextGenerator(tiny_model(tok), tok)


@pytest.fixture(scope="module")
def trained(tok: Tokenizer) -> GPT:
    """A model that has memorised EXAMPLE as one document, between two `<|endoftext|>`."""
    eot = tok.token_to_id(EOT)
    ids = [eot, *tok.encode(EXAMPLE).ids, eot]
    model = tiny_model(tok, block_size=len(ids))
    model.train()
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    return model.eval()


def always_predict(model: GPT, token_id: int) -> GPT:
    """A copy of `model` whose every next-token prediction is `token_id`.

    With the final LayerNorm's weight at zero its output is its bias, so the logits are
    tok_emb @ bias at every position; a bias along token_id's (tied) embedding gives that token
    a logit of 1000 and the others, nearly orthogonal to it, far less.
    """
    model = copy.deepcopy(model)
    with torch.no_grad():
        e = model.tok_emb.weight[token_id]
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(1000 * e / e.dot(e))
    return model


def tokens(model: GPT, prompt: list[list[int]], n: int, **kwargs) -> list[list[int]]:
    steps = list(generate_tokens(model, prompt, n, **kwargs))
    return torch.stack(steps, dim=1).tolist() if steps else [[] for _ in prompt]


def checkpoint(path: Path, model: GPT, tok: Tokenizer, **overrides) -> Path:
    info = {
        "json": tok.to_str(),
        "sha256": tokenizer_sha256(tok),
        "vocab_size": tok.get_vocab_size(),
    }
    payload = {
        "model_config": asdict(model.config),
        "model": model.state_dict(),
        "tokenizer": info,
    }
    for key, value in overrides.items():
        payload[key] = {**payload[key], **value}
    save_checkpoint(payload, path)
    return path


# --- sampling rules ---------------------------------------------------------------------------


def test_greedy_is_deterministic_and_ignores_the_seed(gen: TextGenerator) -> None:
    a = gen.generate("회사명:", num_samples=2, temperature=0, max_new_tokens=20, seed=1)
    b = gen.generate("회사명:", num_samples=1, temperature=0, max_new_tokens=20, seed=2)
    assert a[0].text == a[1].text == b[0].text


def test_same_seed_same_text_other_seed_other_text(gen: TextGenerator) -> None:
    kwargs = {"num_samples": 2, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 20}
    first = gen.generate("회사명:", seed=7, **kwargs)
    assert first == gen.generate("회사명:", seed=7, **kwargs)
    assert first != gen.generate("회사명:", seed=8, **kwargs)
    assert first[0].text != first[1].text  # rows of one batch draw independently


def test_top_k_1_equals_greedy(tok: Tokenizer) -> None:
    model = tiny_model(tok)
    prompt = [[0, 20, 21, 22], [0, 30, 31, 32]]
    greedy = tokens(model, prompt, 15, temperature=0)
    g = torch.Generator().manual_seed(0)
    assert tokens(model, prompt, 15, temperature=1.5, top_k=1, generator=g) == greedy


def test_top_p_and_top_k_only_draw_from_the_head() -> None:
    logits = torch.tensor([[4.0, 2.0, 1.0, 0.0, 0.0]]).repeat(500, 1)  # p(0) ~ 0.82
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, top_p=0.8, generator=g).tolist()) == {0}
    assert set(sample_next(logits, top_p=0.9, generator=g).tolist()) == {0, 1}
    assert set(sample_next(logits, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(sample_next(logits, generator=g).tolist()) == {0, 1, 2, 3, 4}


def test_repetition_penalty_lowers_seen_tokens_only() -> None:
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalize_repetition(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_a_strong_repetition_penalty_prevents_repeats(tok: Tokenizer) -> None:
    model = tiny_model(tok)
    plain = tokens(model, [[0, 20, 21]], 12, temperature=0)[0]
    assert len(set(plain)) < len(plain)  # a random model's greedy output loops
    penalized = tokens(model, [[0, 20, 21]], 12, temperature=0, repetition_penalty=1e9)[0]
    assert len(set(penalized)) == len(penalized)


# --- the KV cache and the context window ------------------------------------------------------


def test_cached_and_uncached_logits_agree_across_slides(tok: Tokenizer) -> None:
    model = tiny_model(tok, block_size=16)
    seq = torch.randint(0, tok.get_vocab_size(), (2, 50))
    cached, uncached = ContextWindow(model, 2, use_cache=True), ContextWindow(model, 2, False)
    with torch.inference_mode():
        for length in range(5, 51):
            new = 5 if length == 5 else 1
            a, b = cached.logits(seq[:, :length], new), uncached.logits(seq[:, :length], new)
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)  # (assert_close imports for 4s)
    assert cached.slides == uncached.slides >= 4  # 50 tokens through a 16-token window


def test_cached_and_uncached_generation_agree(tok: Tokenizer) -> None:
    model = tiny_model(tok, block_size=16)
    prompt = [[0, 40, 41, 42, 43], [0, 50, 51, 52, 53]]
    for kwargs in ({"temperature": 0}, {"temperature": 1.0, "top_k": 20, "top_p": 0.9}):
        runs = [
            tokens(
                model,
                prompt,
                40,
                generator=torch.Generator().manual_seed(3),
                use_cache=use_cache,
                **kwargs,
            )
            for use_cache in (True, False)
        ]
        assert runs[0] == runs[1]
        assert len(runs[0][0]) == 40  # went on past the 16-token window


def test_a_prompt_longer_than_the_context_keeps_its_end(
    tok: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_model(tok, block_size=16)
    long = list(range(10, 40))  # 30 tokens
    with caplog.at_level(logging.WARNING, logger="jobgpt.sampling"):
        out = tokens(model, [long], 5, temperature=0)
    assert "keeping the last 15" in caplog.text
    assert out == tokens(model, [long[-15:]], 5, temperature=0)


# --- stopping -----------------------------------------------------------------------------------


def test_max_new_tokens_is_honoured(gen: TextGenerator) -> None:
    assert len(tokens(gen.model, [[0, 20, 21]], 7, temperature=1.0)[0]) == 7
    word = gen.tokenizer.encode(" 채용").ids[-1]  # a learned token: never a stop
    chatty = TextGenerator(always_predict(gen.model, word), gen.tokenizer)
    (done,) = chatty.generate("", max_new_tokens=7)  # "": no token healing
    assert (done.finish_reason, done.n_tokens) == ("length", 7)
    assert done.text == gen.tokenizer.decode([word]) * 7


@pytest.mark.parametrize("stop_token", [EOT, ANSWER_END])
def test_stops_on_the_stop_token(gen: TextGenerator, stop_token: str) -> None:
    stop_id = gen.tokenizer.token_to_id(stop_token)
    forced = TextGenerator(always_predict(gen.model, stop_id), gen.tokenizer)
    done = forced.generate("", num_samples=3, max_new_tokens=50, temperature=1.0)
    assert [(c.text, c.finish_reason, c.n_tokens) for c in done] == [("", "stop", 1)] * 3
    steps = list(generate_tokens(forced.model, [[0, 20]], 50, stop_ids={stop_id}))
    assert [s.tolist() for s in steps] == [[stop_id]]


def test_a_finished_row_yields_minus_one_while_others_go_on(tok: Tokenizer) -> None:
    model = tiny_model(tok)
    prompt = [[0, 20, 21, 22], [0, 60, 61, 62]]
    free = tokens(model, prompt, 10, temperature=0)
    # a token row 0 makes before row 1 does (or that row 1 never makes)
    stop, at = next(
        (t, i) for i, t in enumerate(free[0]) if t not in free[1][: i + 1] and t not in free[0][:i]
    )
    rows = tokens(model, prompt, 10, temperature=0, stop_ids={stop})
    assert rows[0] == free[0][: at + 1] + [-1] * (len(rows[0]) - at - 1)
    assert rows[1][: at + 1] == free[1][: at + 1]


def test_a_stop_string_cuts_the_text(gen: TextGenerator) -> None:
    (full,) = gen.generate("회사명:", max_new_tokens=40, temperature=0)
    assert len(full.text) > 10
    stop = full.text[6:9]
    (cut,) = gen.generate("회사명:", max_new_tokens=40, temperature=0, stop=[stop])
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"


# --- question-answer mode -----------------------------------------------------------------------


def test_qa_prompt_is_the_training_text_and_tokens(
    trained: GPT, tok: Tokenizer, tmp_path: Path
) -> None:
    gen = TextGenerator(trained, tok)  # its context holds the whole example
    doc = tmp_path / "posting.txt"
    doc.write_text(DOC + "\n", encoding="utf-8")
    cfg = GenerateConfig(question=QUESTION, doc_file=str(doc), max_new_tokens=1)
    prompt, _ = build_prompt(cfg, gen, read_doc(str(doc)))
    assert prompt == build_qa_prompt(QUESTION, DOC)
    assert EXAMPLE.startswith(prompt)
    # Token healing: the prompt's ids are exactly the start of the training ids, and the token
    # training has next is one the model may pick first (its text starts with the healed text).
    training = gen.encode_prompt(EXAMPLE)
    prepared = gen.prepare(prompt)
    n = len(prepared.ids)
    assert prepared.ids == training[:n]
    assert prepared.healed == "\n"
    assert gen.token_texts()[training[n]].startswith(prepared.healed)
    assert prepared.first_allowed[training[n]]


def test_a_json_posting_is_rendered(tmp_path: Path, tok: Tokenizer) -> None:
    from jobgpt.postings import render_posting

    record = {"COMPANY": "뷁카오", "TITLE": "백엔드 개발자", "MAINDUTIES": "API 개발"}
    doc = tmp_path / "posting.json"
    doc.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    gen = TextGenerator(tiny_model(tok, block_size=512), tok)
    prompt, echo = build_prompt(GenerateConfig(doc_file=str(doc)), gen, read_doc(str(doc)))
    assert prompt == build_qa_prompt(DEFAULT_QUESTION, render_posting(record))
    assert echo == ""


def test_a_posting_longer_than_the_context_keeps_the_question(tok: Tokenizer) -> None:
    """The prompt is shortened in the posting's middle, never at its start: the question and
    the answer marker stay (cropping from the left dropped [QUESTION] for real postings)."""
    gen = TextGenerator(tiny_model(tok, block_size=96), tok)
    long_doc = "\n".join(f"{i}. {DOC}" for i in range(30))
    prompt = gen.qa_prompt(QUESTION, long_doc)
    block = gen.model.config.block_size
    assert prompt.startswith(build_qa_prompt(QUESTION, "")[:20]) and QUESTION in prompt
    assert prompt.endswith("[ANSWER]\n") and DOC_CUT in prompt
    assert len(gen.encode_prompt(prompt)) <= block - block // 8
    assert "[DOC]\n0. " in prompt  # the posting's start (company, position) is kept
    short = "짧은 공고"
    assert TextGenerator(tiny_model(gen.tokenizer, block_size=256), gen.tokenizer).qa_prompt(
        QUESTION, short
    ) == build_qa_prompt(QUESTION, short)


def test_a_huge_doc_file_is_read_only_where_a_prompt_can_use_it(tmp_path: Path) -> None:
    path = tmp_path / "one_line.txt"
    path.write_bytes(("서울 채용 공고 " * 1_000_000).encode())  # ~20 MB on one line
    tracemalloc.start()
    try:
        text = read_doc(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_DOC_BYTES and DOC_CUT in text
    assert text.startswith("서울 채용 공고") and text.rstrip().endswith("공고")


def test_the_memorised_answer_comes_back_and_stops_at_answer_end(
    trained: GPT, tok: Tokenizer
) -> None:
    gen = TextGenerator(trained, tok)
    pieces = list(gen.stream(build_qa_prompt(QUESTION, DOC), temperature=0, max_new_tokens=200))
    assert "".join(p.text for p in pieces) == ANSWER + "\n"
    assert pieces[-1].finish_reason == "stop"
    assert not any("\ufffd" in p.text for p in pieces)
    assert len(pieces) > 5  # streamed piece by piece, not in one go


def greedy_run(tmp_path: Path, tok: Tokenizer, capsys, **values) -> tuple[list, str]:
    """Run `jobgpt generate --temperature 0` on a tiny checkpoint: (completions, stdout)."""
    ckpt = checkpoint(tmp_path / "ckpt.pt", tiny_model(tok), tok)
    base = {"checkpoint": str(ckpt), "prompt": "회사명:", "temperature": 0.0}
    done = run_stage("generate", {**base, "max_new_tokens": 6, "device": "cpu", **values})
    return done, capsys.readouterr().out


def test_greedy_prints_one_sample_unless_more_are_asked_for(
    tmp_path: Path, tok: Tokenizer, capsys, caplog
) -> None:
    assert DEFAULT_NUM_SAMPLES > 1  # the default would print identical copies
    with caplog.at_level(logging.INFO, logger="jobgpt.generate"):
        done, out = greedy_run(tmp_path, tok, capsys)
    assert len(done) == 1 and out.rstrip("\n") == done[0].text.rstrip("\n")
    [why] = [r.message for r in caplog.records if "deterministic" in r.message]
    assert "greedy" in why and "--num-samples" in why


@pytest.mark.parametrize("n", [2, DEFAULT_NUM_SAMPLES])  # the default value, typed
def test_greedy_with_num_samples_typed_draws_them_and_warns_once(
    tmp_path: Path, tok: Tokenizer, capsys, caplog, n: int
) -> None:
    with caplog.at_level(logging.INFO, logger="jobgpt.generate"):
        done, _ = greedy_run(tmp_path, tok, capsys, num_samples=n)
    assert len(done) == n and len({c.text for c in done}) == 1
    warnings = [r for r in caplog.records if "deterministic" in r.message]
    assert [r.levelno for r in warnings] == [logging.WARNING]


def test_threads_flag_pins_the_decoding_threads(
    tmp_path: Path, tok: Tokenizer, capsys, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--threads 1` runs every decoding step on one thread, whatever torch had before, and the
    summary line says so; without it the steps are timed (told in the summary too)."""
    seen: list[int] = []
    real_sample_next = sampling.sample_next

    def spy(*args, **kwargs) -> torch.Tensor:  # runs inside each decoding step
        seen.append(torch.get_num_threads())
        return real_sample_next(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_next", spy)
    monkeypatch.setattr(threads, "_threads_before_policies", None)  # as in a fresh process
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO, logger="jobgpt.generate"):
            greedy_run(tmp_path, tok, capsys, threads=1)
            greedy_run(tmp_path, tok, capsys, threads=0)
    finally:
        torch.set_num_threads(before)
    pinned, measured = [r.getMessage() for r in caplog.records if "tokens/s" in r.getMessage()]
    assert seen[:6] == [1] * 6  # max_new_tokens 6 (greedy_run)
    assert seen[6:10] == [2] * 4  # measuring: the probe starts at the 2 threads torch had
    assert pinned.endswith("threads: 1 thread (pinned by --threads)")
    assert "threads: " in measured and "pinned" not in measured


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, flag",
    [
        ({"temperature": -0.1}, "--temperature"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": -1}, "--top-k"),
        ({"repetition_penalty": 0.9}, "--repetition-penalty"),
        ({"num_samples": 0}, "--num-samples"),
        ({"max_new_tokens": 0}, "--max-new-tokens"),
        ({"stop": [""]}, "--stop"),
        ({"question": "요약해줘"}, "--question"),
    ],
)
def test_bad_settings_are_refused(values: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        run_stage("generate", values)


def test_prompt_and_doc_file_together_are_refused(tmp_path: Path) -> None:
    doc = tmp_path / "p.txt"
    doc.write_text(DOC, encoding="utf-8")
    with pytest.raises(ConfigError, match="--prompt and --doc-file"):
        run_stage("generate", {"prompt": "회사명:", "doc_file": str(doc)})


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "  \n", "no posting text"),
        ("bad.json", "{not json", "not valid JSON"),
        ("two.json", "[{}, {}]", "one posting"),
        ("nothing.json", '{"ID": 3}', "no posting text"),
    ],
)
def test_bad_doc_files_are_refused(tmp_path: Path, name: str, content, problem: str) -> None:
    doc = tmp_path / name
    if content is not None:
        doc.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=problem) as err:
        run_stage("generate", {"question": QUESTION, "doc_file": str(doc)})
    assert str(doc) in err.value.message


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        run_stage("generate", {"checkpoint": str(tmp_path / "ckpt.pt")})
    assert command("train") in err.value.hint


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"model_config": {"vocab_size": 999}}, "vocab 999"),
        ({"tokenizer": {"vocab_size": 999}}, "vocab 999"),
        ({"tokenizer": {"sha256": "0" * 64}}, "sha256"),
    ],
)
def test_a_tokenizer_that_does_not_fit_the_model_is_refused(
    tmp_path: Path, gen: TextGenerator, overrides: dict, problem: str
) -> None:
    path = checkpoint(tmp_path / "ckpt.pt", gen.model, gen.tokenizer, **overrides)
    with pytest.raises(CheckpointError, match=problem):
        TextGenerator.from_checkpoint(path, device="cpu")


# --- printing and the script --------------------------------------------------------------------


class RunsCode:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "craft, problem",
    [
        (lambda p: {**p, "model_config": {**p["model_config"], "n_expert": 4}}, "does not fit"),
        (lambda p: {**p, "model_config": {**p["model_config"], "n_layer": 3}}, "does not fit"),
        (lambda p: {**p, "tokenizer": {**p["tokenizer"], "json": "{not json"}}, "not valid"),
        (lambda p: {**p, "model": RunsCode()}, "refuses to load"),
    ],
    ids=["unknown config key", "layers missing", "bad tokenizer JSON", "code in the pickle"],
)
def test_crafted_checkpoints_get_a_message_not_a_traceback(
    tmp_path: Path, gen: TextGenerator, craft, problem: str, capsys
) -> None:
    path = checkpoint(tmp_path / "ckpt.pt", gen.model, gen.tokenizer)
    payload = torch.load(path, weights_only=True)
    torch.save(craft(payload), path)
    with pytest.raises(CheckpointError, match=problem) as err:
        TextGenerator.from_checkpoint(path, device="cpu")
    assert "weights_only=False" not in str(err.value)  # never advise unsafe loading
    assert "this must never run" not in capsys.readouterr().out


def test_samples_print_one_after_another() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = SamplePrinter(3, stream=True, out=out, err=err)
    for piece in [
        Piece(0, "가"), Piece(1, "나"), Piece(2, "다"), Piece(1, "나", "stop"), Piece(0, "가\n"),
        Piece(2, "다"), Piece(0, "", "length"), Piece(2, "", "length"),
    ]:  # fmt: skip
        printer.feed(piece)
    assert out.getvalue() == "가가\n\n나나\n\n다다\n"
    assert err.getvalue() == "".join(f"--- sample {i}/3 ---\n" for i in (1, 2, 3))
    assert printer.texts == ["가가\n", "나나", "다다"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate.py"), "--device", "cpu", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # tiny model: threads only add overhead
        timeout=120,
    )


def test_script_answers_a_question_about_a_posting(
    tmp_path: Path, trained: GPT, tok: Tokenizer
) -> None:
    ckpt = checkpoint(tmp_path / "ckpt.pt", trained, tok)
    doc = tmp_path / "posting.txt"
    doc.write_text(DOC, encoding="utf-8")
    done = run_script(
        "--checkpoint", str(ckpt), "--doc-file", str(doc), "--temperature", "0",
        "--num-samples", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ANSWER + "\n"
    assert "Traceback" not in done.stderr


def test_script_prints_several_samples_and_explains_errors(tmp_path: Path, tok: Tokenizer) -> None:
    ckpt = checkpoint(tmp_path / "ckpt.pt", tiny_model(tok), tok)
    done = run_script(
        "--checkpoint", str(ckpt), "--prompt", "회사명:", "--num-samples", "2",
        "--max-new-tokens", "12", "--no-stream", "--seed", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--- sample 2/2 ---" in done.stderr and "--- sample" not in done.stdout
    gen = TextGenerator(tiny_model(tok), tok)
    texts = [c.text for c in gen.generate("회사명:", num_samples=2, max_new_tokens=12, seed=5)]
    assert done.stdout == "\n".join(t if t.endswith("\n") else t + "\n" for t in texts)

    bad = run_script("--checkpoint", str(tmp_path / "none.pt"))
    assert bad.returncode == 1
    assert "error:" in bad.stderr and command("train") in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""


def test_healing_never_picks_a_control_token(gen: TextGenerator) -> None:
    prepared = gen.prepare("회사명 <")
    assert prepared.healed.endswith("<")
    assert not any(prepared.first_allowed[i] for i in gen.control_ids)
    assert prepared.first_allowed.any()


def test_healing_takes_back_every_token_one_vocabulary_token_spans() -> None:
    """Training merged " ===\\n\\n회사명:" into one token; a prompt ending " ===\\n" encodes as
    " ===" + "\\n". Healing only the "\\n" left the model after a " ===" it never saw there (the
    demo model then wrote "포지션:xpressxpress..."); both must be taken back."""
    lines = [f"=== [회사{i}] 개발자 채용 ===\n\n회사명: 회사{i}" for i in range(40)]
    tok = train_tokenizer(lines, vocab_size=400)
    gen = TextGenerator(tiny_model(tok, block_size=64), tok)
    ids = tok.encode(" ===\n\n회사명:", add_special_tokens=False).ids
    assert len(ids) == 1  # the merge this is about
    prompt = gen.prepare("=== [회사1] 개발자 채용 ===\n")
    assert prompt.healed == " ===\n"
    assert prompt.first_allowed[ids[0]]  # the training-time token may come next
    assert gen.prepare("[ANSWER]\n").healed == "\n"  # a marker is never taken back
