"""Every stage's settings, and every default, in one place.

Each stage is configured by one dataclass. The CLI builds its flags from these fields (the
``help`` metadata becomes the flag's help), and the ``scripts/*.py`` wrappers run the same CLI, so
no default is ever written twice. Each dataclass checks its values when it is built
(`__post_init__`), so a config made in code gets the same clear errors as one made from flags.
This module must stay cheap to import: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from jobgpt.checks import (
    Checked,
    at_least_0,
    at_least_1,
    check_generation,
    check_model,
    check_sampling,
    check_training,
    one_of,
    require,
)
from jobgpt.errors import ConfigError
from jobgpt.presets import TRAIN_PRESETS

# The reference pipeline's paths. Relative paths resolve against the current directory, as the
# reference `uv run python scripts/...` commands expect (run them from the repo root).
DATA_DIR = "data"
DEFAULT_CORPUS = f"{DATA_DIR}/samples.txt"
DEFAULT_TOKENIZER = f"{DATA_DIR}/tokenizer.json"
CHECKPOINT_DIR = "checkpoints"
DEFAULT_CHECKPOINT = f"{CHECKPOINT_DIR}/ckpt.pt"

DEFAULT_SEED = 1337
DEFAULT_NUM_SAMPLES = 3  # `jobgpt generate` draws this many samples unless told otherwise


def arg(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field whose help text becomes the CLI flag's help."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


# --- the stages' settings ------------------------------------------------------------------------


@dataclass
class DemoDataConfig(Checked):
    out: str = arg(DEFAULT_CORPUS, "where to write the synthetic demo corpus")
    n: int = arg(3000, "number of synthetic postings")
    seed: int = arg(DEFAULT_SEED, "random seed: the same seed writes the same corpus")
    overwrite: bool = arg(False, "replace --out if it already exists (it may be a real corpus)")

    def check(self) -> None:
        at_least_1(n=self.n)


@dataclass
class TokenizerConfig(Checked):
    input: list[str] = arg([DEFAULT_CORPUS], "corpus files, directories or globs")
    vocab_size: int = arg(24_000, "requested vocabulary size (special and byte tokens included)")
    out: str = arg(DEFAULT_TOKENIZER, "where to save tokenizer.json")
    min_frequency: int = arg(2, "a merge must occur at least this often to be learned")
    seed: int = arg(DEFAULT_SEED, "seed for the held-out slice of the health report")
    overwrite: bool = arg(False, "replace --out if it exists (bins built with it stop matching)")

    def check(self) -> None:
        at_least_1(vocab_size=self.vocab_size, min_frequency=self.min_frequency)


@dataclass
class DatasetConfig(Checked):
    input: list[str] = arg([DEFAULT_CORPUS], "corpus files, directories or globs")
    tokenizer: str = arg(DEFAULT_TOKENIZER, "tokenizer.json to encode with")
    out_dir: str = arg(DATA_DIR, "directory for train.bin, val.bin and meta.json")
    val_fraction: float = arg(0.05, "share of documents (by group) held out for validation")
    seed: int = arg(DEFAULT_SEED, "seed of the document-level train/val split")
    block_size: int = arg(256, "context length the val split must hold several windows of")
    group_min_chars: int = arg(
        100, "paragraphs this long or longer tie documents sharing them to one split (0 = off)"
    )
    overwrite: bool = arg(False, "replace the bins in --out-dir if they exist")

    def check(self) -> None:
        at_least_1(block_size=self.block_size)
        require(
            0.0 < self.val_fraction < 1.0,
            f"--val-fraction {self.val_fraction} is not between 0 and 1",
            "use e.g. 0.05",
        )
        require(
            self.group_min_chars >= 0,
            f"--group-min-chars {self.group_min_chars} is negative",
            "use 0 (off) or e.g. 100",
        )


@dataclass
class ModelConfig(Checked):
    """The GPT's architecture. Saved inside every checkpoint; later stages read it from there."""

    vocab_size: int = arg(24_000, "vocabulary size (set from the tokenizer, not a flag)", cli=False)
    arch: str = arg(
        "gpt",
        "gpt (GPT-2: learned positions, LayerNorm, GELU, tied head) or modern (Qwen3-style: "
        "rotary positions, RMSNorm, QK-norm, SwiGLU; exports as a transformers Qwen3 model)",
    )
    block_size: int = arg(256, "context length in tokens")
    n_layer: int = arg(6, "transformer blocks")
    n_head: int = arg(6, "attention heads per block")
    n_embd: int = arg(384, "embedding width")
    # 0, as in nanoGPT and nanochat. Measured (demo-size model, 150 real postings, 17 epochs):
    # dropout 0.1 reached the same best val loss (6.22 vs 6.24), while it costs ~12% of a CPU
    # training step at the reference size. Heavier overfitting is what best.pt, the diagnosis
    # and --dropout 0.1 are for.
    dropout: float = arg(
        0.0, "dropout on embeddings and residual branches (try 0.1 if overfitting)"
    )
    bias: bool = arg(True, "biases in Linear and LayerNorm layers, as in GPT-2 (arch gpt only)")
    tied_head: bool | None = arg(
        None, "output head shares the token embedding (unset: yes for gpt, no for modern)"
    )
    rope_theta: float = arg(10_000.0, "rotary position embedding base (arch modern)")

    def check(self) -> None:
        check_model(self)

    @property
    def tied(self) -> bool:
        """Whether the head reuses the token embedding: --tied-head, else the arch's default."""
        return self.tied_head if self.tied_head is not None else self.arch == "gpt"


@dataclass
class TrainConfig(Checked):
    data_dir: str = arg(DATA_DIR, "directory with train.bin, val.bin, meta.json, tokenizer.json")
    out_dir: str = arg(CHECKPOINT_DIR, "where ckpt.pt, best.pt, metrics.jsonl and loss.png go")
    preset: str = arg(
        "m4",
        "settings bundle: m4 (the reference laptop run), modern (the same shape, modern recipe), "
        "tiny (a minute on a CPU; tests) or demo (what `jobgpt demo` trains)",
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    # optimisation
    batch_size: int = arg(16, "windows per micro-batch")
    grad_accum: int = arg(1, "micro-batches per optimizer step (effective batch = product)")
    lr: float = arg(3e-4, "peak learning rate")
    min_lr_ratio: float = arg(0.1, "cosine decay ends at lr * this")
    warmup_steps: int = arg(100, "linear warmup steps (capped at a fifth of --max-steps)")
    max_steps: int = arg(2000, "optimizer steps to train for")
    max_minutes: float = arg(0.0, "wall-clock budget in minutes (0 = none); saves and stops")
    weight_decay: float = arg(0.1, "AdamW weight decay, applied to weight matrices only")
    beta1: float = arg(0.9, "AdamW beta1")
    beta2: float = arg(0.95, "AdamW beta2")
    grad_clip: float = arg(1.0, "clip the gradient norm to this (0 = off)")
    optimizer: str = arg(
        "adamw", "adamw, or muon (Muon for the blocks' matrices, AdamW at --lr for the rest)"
    )
    muon_lr: float = arg(0.02, "peak learning rate of the Muon matrices (--optimizer muon)")
    embed_lr: float = arg(
        0.0, "peak learning rate of an untied token embedding under --optimizer muon (0 = --lr)"
    )
    schedule: str = arg(
        "cosine",
        "cosine (warmup, cosine decay) or wsd (warmup, constant, linear warmdown at the end)",
    )
    warmdown: float = arg(0.4, "wsd: share of the run (steps or minutes) spent decaying the lr")
    windows: str = arg(
        "random",
        "random (windows anywhere in the token stream) or documents (each window starts at a "
        "document, shorter documents packed behind it)",
    )
    copy_warmup: int = arg(
        0,
        "train the first N steps on copying drills (random tokens shown twice), not text: "
        "teaches the model to copy from its context, so answers quote the posting",
    )
    copy_share: float = arg(
        0.0, "after --copy-warmup, this share of each batch's rows stays copying drills"
    )
    # evaluation and monitoring
    eval_interval: int = arg(100, "evaluate train/val loss (and save checkpoints) every N steps")
    log_interval: int = arg(10, "one progress line every N steps between evals (0 = evals only)")
    eval_windows: int = arg(64, "fixed windows per split at each eval (whole val split if smaller)")
    early_stop: bool = arg(False, "stop when val loss keeps rising while train loss falls")
    patience: int = arg(3, "evals of rising (or flat) val loss before declaring overfitting/stall")
    # runtime
    device: str = arg("auto", "auto, cpu, cuda, cuda:N or mps")
    dtype: str = arg("auto", "auto, float32, bfloat16 or float16 (autocast compute dtype)")
    compile: str = arg("auto", "torch.compile: auto (on for CUDA), on, off")
    threads: int = arg(0, "intra-op CPU threads: 0 = chosen by measurement and re-checked")
    seed: int = arg(DEFAULT_SEED, "random seed for init and batch sampling")
    resume: bool = arg(False, "continue from out_dir/ckpt.pt exactly where it stopped")
    overwrite: bool = arg(False, "start over even if out_dir already holds a checkpoint")

    def check(self) -> None:
        check_training(self)


@dataclass
class GenerateConfig(Checked):
    checkpoint: str = arg(DEFAULT_CHECKPOINT, "checkpoint to sample from (ckpt.pt or best.pt)")
    prompt: str = arg("", "text to continue (empty = start of a new document)")
    question: str | None = arg(
        None, "question-answer mode: the [QUESTION] text (unset: ask for a summary)"
    )
    doc_file: str | None = arg(
        None, "question-answer mode: a posting as .txt or .json; prints the answer"
    )
    num_samples: int | None = arg(
        None, f"samples to draw, as one batch (unset: {DEFAULT_NUM_SAMPLES}, or 1 when greedy)"
    )
    max_new_tokens: int = arg(200, "tokens to generate per sample at most")
    temperature: float = arg(0.8, "sampling temperature; 0 = greedy (deterministic)")
    top_k: int = arg(50, "sample from the k most likely tokens (0 = off)")
    top_p: float = arg(0.95, "nucleus sampling: smallest token set with this much mass, in (0, 1]")
    repetition_penalty: float = arg(1.0, "divide logits of already-generated tokens by this (>= 1)")
    stop: list[str] = arg([], "extra stop strings (besides <|endoftext|> and [/ANSWER])")
    seed: int = arg(DEFAULT_SEED, "random seed: the same seed gives the same text")
    stream: bool = arg(True, "print text as it is generated")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N or mps")
    threads: int = arg(0, "intra-op CPU threads: 0 = chosen by measurement and re-checked")

    def check(self) -> None:
        at_least_0(threads=self.threads)
        check_sampling(self.temperature, self.top_k, self.top_p, self.repetition_penalty)
        check_generation(
            1 if self.num_samples is None else self.num_samples, self.max_new_tokens, self.stop
        )
        require(
            self.doc_file is not None or self.question is None,
            "--question needs a posting to ask about",
            "add --doc-file posting.txt (or .json)",
        )
        require(
            not (self.prompt and self.doc_file is not None),
            "--prompt and --doc-file cannot be combined",
            "use --prompt to continue text, or --question/--doc-file to ask about a posting",
        )

    @property
    def samples(self) -> int:
        """--num-samples if given; else one for greedy decoding (every sample would be the
        same), DEFAULT_NUM_SAMPLES otherwise."""
        if self.num_samples is not None:
            return self.num_samples
        return 1 if self.temperature == 0 else DEFAULT_NUM_SAMPLES


@dataclass
class EvalConfig(Checked):
    """`jobgpt eval`: how good a checkpoint is, in numbers that compare across runs."""

    checkpoint: str = arg(DEFAULT_CHECKPOINT, "checkpoint to evaluate (ckpt.pt or best.pt)")
    data_dir: str | None = arg(
        None, "bins whose val split to score (unset: the data dir the checkpoint was trained on)"
    )
    text: list[str] = arg(
        [], "files to score in bits per byte (txt/jsonl/json/csv, as the data stages read them)"
    )
    qa: list[str] = arg(
        [], "question-answer postings (QA format or JSON) to score for faithfulness"
    )
    samples: int = arg(8, "free generations to check for posting structure (0 = skip)")
    max_qa: int = arg(50, "question-answer examples to score at most (greedy answers take time)")
    stride: int | None = arg(None, "sliding-window stride for --text (unset: half the context)")
    max_new_tokens: int = arg(320, "tokens per generated answer or sample at most")
    json: bool = arg(False, "print the results as JSON on stdout instead of a table")
    report: str | None = arg(None, "also write a markdown report to this file")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = arg(DEFAULT_SEED, "seed of the free generations")

    def check(self) -> None:
        at_least_1(max_qa=self.max_qa, max_new_tokens=self.max_new_tokens)
        require(self.samples >= 0, f"--samples must be >= 0, got {self.samples}", "use e.g. 8")
        if self.stride is not None:
            at_least_1(stride=self.stride)


@dataclass
class ExportConfig(Checked):
    """`jobgpt export`: a checkpoint as files other tools load (HuggingFace transformers)."""

    checkpoint: str = arg(DEFAULT_CHECKPOINT, "checkpoint to export (ckpt.pt or best.pt)")
    out: str = arg("export", "directory to write")
    format: str = arg(
        "hf", "hf (a transformers model directory) or safetensors (raw weights + our config)"
    )
    overwrite: bool = arg(False, "replace --out if it already exists")

    def check(self) -> None:
        one_of("format", self.format, ("hf", "safetensors"))


@dataclass
class ServeConfig(Checked):
    """`jobgpt serve`: an OpenAI-compatible HTTP API and a web page for one checkpoint."""

    checkpoint: str = arg(DEFAULT_CHECKPOINT, "checkpoint to serve (ckpt.pt or best.pt)")
    host: str = arg("127.0.0.1", "address to listen on (another than loopback needs --api-key)")
    port: int = arg(8000, "port to listen on")
    api_key: str | None = arg(
        None, "key every /v1 request must send as `Authorization: Bearer KEY` (or JOBGPT_API_KEY)"
    )
    cors_origin: str | None = arg(None, "one web origin allowed to call the API from a browser")
    max_batch: int = arg(8, "requests decoded together at each step (continuous batching)")
    max_queue: int = arg(64, "requests waiting for a slot at most; more get 503 + Retry-After")
    timeout: float = arg(120.0, "seconds a request may take at most")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N or mps")
    threads: int = arg(
        0, "intra-op CPU threads for decoding: 0 = chosen by measurement, re-checked while serving"
    )

    def check(self) -> None:
        at_least_1(max_batch=self.max_batch, max_queue=self.max_queue)
        at_least_0(threads=self.threads)
        require(1 <= self.port <= 65535, f"--port {self.port} is not a port", "use e.g. 8000")
        require(self.timeout > 0, f"--timeout must be > 0, got {self.timeout}", "use e.g. 120")


@dataclass
class DemoConfig(Checked):
    """`jobgpt demo`; its training settings are TRAIN_PRESETS["demo"]."""

    out_dir: str = arg("runs/demo", "where the demo keeps its corpus, tokenizer, bins, checkpoints")
    n: int = arg(DemoDataConfig().n, "synthetic postings in the demo corpus")
    vocab_size: int = arg(8_000, "tokenizer vocabulary (the demo corpus is too uniform for 24,000)")
    fresh: bool = arg(False, "start over instead of reusing finished stages")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = arg(DEFAULT_SEED, "seed for the corpus, the split and training")

    def check(self) -> None:
        at_least_1(n=self.n, vocab_size=self.vocab_size)


def make_config(cls: type, values: dict[str, Any] | None = None) -> Any:
    """Build a stage config from (possibly nested) values, filling the rest from defaults.

    For stages with presets, the chosen preset's values come first and explicit values override
    them, so `--preset tiny --lr 1e-2` means "tiny, but with this learning rate".
    """
    values = dict(values or {})
    if cls is TrainConfig:
        name = values.get("preset", cls().preset)
        if name not in TRAIN_PRESETS:
            raise ConfigError(
                f"unknown preset {name!r}", f"choose one of: {', '.join(sorted(TRAIN_PRESETS))}"
            )
        values = deep_merge(TRAIN_PRESETS[name], values)
    return _build(cls, values)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, values: dict[str, Any]) -> Any:
    from dataclasses import is_dataclass
    from typing import get_type_hints

    hints = get_type_hints(cls)
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if is_dataclass(hints[f.name]) and isinstance(value, dict):
            value = _build(hints[f.name], value)
        kwargs[f.name] = value
    return cls(**kwargs)
