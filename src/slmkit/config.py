"""Typed configuration shared by the Python API, the CLI and YAML recipes.

Every field carries its help text, so a recipe file, ``--help`` and the docs say the same thing.
Unknown keys are rejected with the list of valid ones, so a typo in a recipe never silently does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slmkit.errors import ConfigError
from slmkit.models.registry import DEFAULT_BASE_MODEL, DEFAULT_EMBEDDER, DEFAULT_MODEL


class StrictModel(BaseModel):
    """Base for configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChunkingConfig(StrictModel):
    chunk_tokens: int = Field(
        200, ge=16, description="Maximum chunk length in embedder tokens (MiniLM reads at most 256)."
    )
    overlap_tokens: int = Field(
        40, ge=0, description="Tokens repeated between neighbouring chunks so no sentence loses its context."
    )


class IngestConfig(StrictModel):
    text_field: str | None = Field(
        None,
        description="JSON/JSONL/HF field or CSV/TSV column holding the text; unset: 'text', and a CSV/TSV "
        "without a 'text' column is read whole, each row as 'column: value' lines.",
    )
    title_field: str = Field(
        "title", description="JSON/JSONL/HF field or CSV/TSV column holding the title (optional)."
    )

    @property
    def text_key(self) -> str:
        """The field or column the text is read from."""
        return self.text_field or "text"


# convex fusion's BM25 share where neither the configuration nor the knowledge base sets one, chosen on
# the training questions of three domains (docs/retrieval.md): recall@1 at 0.4 / 0.5 / 0.6 is 0.763 /
# 0.789 / 0.810 on SQuAD's train articles, 0.395 / 0.378 / 0.289 on Medical Meadow's, 0.977 / 0.975 /
# 0.965 on PubMedQA's; 0.5 has the best mean and the smallest worst loss. Above one half, BM25's first
# hit outranks every chunk BM25 did not retrieve, whatever the embedder thinks of it.
DEFAULT_LEXICAL_WEIGHT = 0.5


class RetrievalConfig(StrictModel):
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="dense (embeddings), bm25 (keywords) or hybrid (both, fused)."
    )
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="How hybrid fuses: convex (min-max normalised scores, weighted by lexical_weight) or rrf "
        "(reciprocal rank). convex measured better on SQuAD (docs/retrieval.md).",
    )
    lexical_weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="convex fusion: the BM25 share of the score. null: the knowledge base's own, which "
        "slmkit index tune chooses on its question pairs, else 0.5 (chosen on the training questions of "
        "three domains; docs/retrieval.md).",
    )
    top_k: int = Field(3, ge=1, le=50, description="Chunks handed to the generator.")
    candidates: int = Field(20, ge=1, description="Hits taken from each retriever before fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant (Cormack et al. use 60).")
    reranker: str | None = Field(
        None,
        description="Cross-encoder that re-orders the first stage's top rerank_depth hits (a packaged name "
        "such as slmkit-reranker-minilm, or a folder slmkit rerank train wrote); null: the first stage's "
        "order.",
    )
    rerank_depth: int = Field(
        10,
        ge=1,
        le=200,
        description="First-stage hits the reranker re-orders (10: recall@1 0.803 vs 0.800 for 20 on "
        "SQuAD eval questions, in half the time; docs/retrieval.md).",
    )
    rerank_weight: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="The reranker's share of the final score over the reranked hits: a convex combination "
        "of its scores and the first stage's, each min-max normalised over those hits as hybrid fusion "
        "does (1: the reranker's order alone). 0.7, chosen on 300 held-out train questions: SQuAD eval "
        "recall@1 0.824 against 0.801 at 1 (docs/retrieval.md).",
    )

    @field_validator("reranker", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        # `--reranker none` on the command line and `reranker: none` in YAML both mean no reranker.
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "null") else value

    reranker_engine: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description="What runs the reranker: llama.cpp (loads in a fraction of a second, no torch), "
        "transformers (sentence-transformers' CrossEncoder), or auto: llama.cpp where installed and no "
        "CUDA device is used. Same scores either way.",
    )
    query_encoder: Literal["auto", "llama.cpp", "sentence-transformers"] = Field(
        "auto",
        description="What embeds questions: llama.cpp runs the index's embedder from a GGUF converted once "
        "(starts in ~0.1 s instead of seconds, same vectors); auto: llama.cpp where installed and no CUDA "
        "device is used, else sentence-transformers (which always embeds the chunks).",
    )


class AbstentionConfig(StrictModel):
    min_relevance: float = Field(
        0.10,
        description="Abstain without generating when the best retrieved chunk's cosine similarity to the "
        "question is below this: a floor for questions nothing in the knowledge base is near. Higher "
        "settings refused answerable questions on real documents (a general question over a manual "
        "scores 0.12-0.26) while the reader's confidence and the coverage gate refused the off-topic "
        "ones anyway; on SQuAD train articles 0.10 scores as 0.20 and 0.25 do (0.30 was the previous "
        "default, 0.40 the untuned SmolLM2's): see docs/abstention.md.",
    )
    min_coverage: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Abstain without generating when less than this share of the names in the question "
        "(capitalised words, numbers) occur in the retrieved passages: the knowledge base does not "
        "cover what the question is about. 0 disables the check.",
    )
    min_support: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Abstain when less than this share of the answer's content words occur in the "
        "retrieved text (the answer is not supported by the knowledge base).",
    )
    max_no_answer: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Per-passage reading only: abstain when the reader gives every passage at least "
        "this probability of holding no answer (calibrated on SQuAD train articles: docs/abstention.md).",
    )


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(64, ge=1, description="Upper bound on generated tokens per answer.")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding (reproducible).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass when temperature > 0.")
    repetition_penalty: float = Field(1.0, ge=1.0, description="1.0 disables the penalty.")
    max_prompt_tokens: int = Field(
        2048,
        ge=64,
        description="Prompt budget; retrieved context beyond it (or beyond the model window) is trimmed "
        "with a warning. Long prompts are the main CPU cost.",
    )
    grounded: bool | Literal["auto"] = Field(
        "auto",
        description="Keep the answer a verbatim span of the passage it is read from (a constraint on "
        "decoding; transformers and llama.cpp backends). auto: on for per-passage reading.",
    )


class BackendConfig(StrictModel):
    """Which engine generates: local transformers, local llama.cpp, or a remote OpenAI-compatible server."""

    type: Literal["auto", "transformers", "llama.cpp", "openai"] = Field(
        "auto",
        description="auto: openai when base_url is set; else llama.cpp where it is installed and runs the "
        "model (decoder-only, packaged or local, on a CPU): it gives the same greedy answers as "
        "transformers from an f32 export, several times faster (docs/serving.md); transformers otherwise "
        "(a GPU, encoder-decoders, hub ids). openai: any OpenAI-compatible server at base_url.",
    )
    gguf_quant: Literal["auto", "f32", "f16", "q8_0", "q4_k_m"] = Field(
        "auto",
        description="llama.cpp only: the format a non-GGUF model is exported to (once, then cached). "
        "auto: the format measured to keep a packaged model's greedy answers (f16 for the reader: "
        "200/200 identical to f32 at half the size), f32 for any other model (the one whose answers "
        "match transformers; measured per format in docs/serving.md).",
    )
    threads: int | None = Field(
        None, ge=1, description="llama.cpp only: CPU threads (default: the cores this process may run on)."
    )
    base_url: str | None = Field(
        None, description="openai only: the server's API root, e.g. http://127.0.0.1:8000/v1."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai only: environment variable holding the server's API key."
    )
    tokenizer: str | None = Field(
        None,
        description="openai only: a local model whose tokenizer counts prompt tokens exactly "
        "(otherwise estimated conservatively).",
    )
    context_window: int | None = Field(
        None, ge=64, description="openai only: the served model's window (default: asked of the server)."
    )
    timeout_s: float = Field(120.0, gt=0, description="openai only: per-request timeout in seconds.")
    max_retries: int = Field(
        3, ge=0, description="openai only: retries on connection errors and 5xx before giving up."
    )


class AskConfig(StrictModel):
    """Everything ``slmkit ask`` / ``chat`` need; a recipe's ``ask:`` section."""

    model: str = Field(DEFAULT_MODEL, description="Packaged name, local folder, GGUF file or hub id.")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weights and compute precision.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transformers backend: where the generator runs; auto: CUDA when available."
    )
    backend: BackendConfig = Field(default_factory=BackendConfig)
    reading: Literal["auto", "per-passage", "joint"] = Field(
        "auto",
        description="per-passage: read each retrieved passage on its own and answer from the one the "
        "model is surest holds the answer (for readers trained with data.context: passage); joint: all "
        "passages in one prompt. auto: per-passage for readers, joint for other models.",
    )
    sure_below: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Per-passage reading: stop reading further passages once one has a no-answer "
        "probability below this (most answers are in the best-ranked passage); 0 reads them all. 0.1 "
        "reads 1.8 of 3 passages with the same answers from gold passages (docs/reader.md).",
    )
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    abstention: AbstentionConfig = Field(default_factory=AbstentionConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)


class VectorIndexConfig(StrictModel):
    """How chunk vectors are searched: exactly, or approximately for millions of chunks
    (measured recall and memory per type in docs/scaling.md)."""

    type: Literal["flat", "hnsw", "ivf-pq"] = Field(
        "flat",
        description="flat: exact search, 4 bytes x dim per chunk (fine to ~1M chunks); hnsw: a "
        "navigable graph, near-exact and fast, more memory than flat; ivf-pq: clustered and "
        "compressed to pq_bytes per chunk, for corpora whose vectors do not fit in memory. With a "
        "PostgreSQL store, pgvector's HNSW index is used whatever this says.",
    )
    hnsw_m: int = Field(16, ge=4, le=100, description="hnsw: links per node (FAISS M, pgvector m).")
    ef_construction: int = Field(
        64, ge=8, description="hnsw: candidates considered while inserting (build time vs recall)."
    )
    ef_search: int = Field(
        64, ge=1, description="hnsw: candidates considered per query (query time vs recall)."
    )
    ivf_lists: int | None = Field(
        None,
        ge=1,
        description="ivf-pq: clusters; default about 4 x sqrt(training vectors), at most training/39.",
    )
    pq_bytes: int | None = Field(
        None, ge=1, description="ivf-pq: bytes per stored vector (must divide dim); default dim / 8."
    )
    nprobe: int = Field(16, ge=1, description="ivf-pq: clusters searched per query (query time vs recall).")
    train_size: int = Field(
        65536,
        ge=1000,
        description="ivf-pq: vectors held in memory to train the clusters before any is added; a "
        "knowledge base with fewer than 1,000 chunks in all is kept flat (exact).",
    )
    build_memory_mb: int = Field(
        1024,
        ge=64,
        description="PostgreSQL store: memory for pgvector's HNSW build (maintenance_work_mem), raised "
        "to this for the build, never below the server's own setting. The graph of 1M 384-dim "
        "vectors needs about 2,048; past this it is built on disk, several times slower.",
    )


class IndexConfig(StrictModel):
    """Everything ``slmkit index build`` needs; a recipe's ``index:`` section."""

    embedder: str = Field(DEFAULT_EMBEDDER, description="Packaged embedder, local folder or hub id.")
    query_embedder: str | None = Field(
        None,
        description="What embeds questions, if not the embedder: a query adapter trained for the "
        "embedder's vector space (slmkit index tune writes one into the knowledge base; chunk vectors stay "
        "as they are).",
    )
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    chunk_titles: bool = Field(
        True,
        description="Embed and keyword-index each chunk with its title (the document's, and for HTML, "
        "Markdown and Word files the section headings above it) on the line before its text, as the "
        "reranker reads it: a section titled 'Termination' is found for a question about termination "
        "though its text never says the word. Knowledge bases built before this setting existed keep "
        "indexing text only (their manifest lacks it), so an add stays consistent with what is there.",
    )
    batch_size: int = Field(64, ge=1, description="Chunks embedded per forward pass.")
    write_batch: int = Field(
        2048,
        ge=1,
        description="Chunks read, embedded and written per batch: a build holds one batch of text at a "
        "time, so its memory does not grow with the corpus (beyond the vector index itself).",
    )
    vector_index: VectorIndexConfig = Field(default_factory=VectorIndexConfig)
    store: str | None = Field(
        None,
        description="Keep the knowledge base in PostgreSQL (pgvector + full-text search) instead of "
        "files: postgresql://USER@HOST:PORT/DB#TABLE (TABLE defaults to the --kb folder's name). The "
        "folder then only records where the knowledge base lives; a password is never written there "
        "(give it with PGPASSWORD or ~/.pgpass). Needs pip install 'slmkit[postgres]'.",
    )


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points, following nested config models."""
    for key in loc[:-1]:
        field = model.model_fields.get(str(key))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def _describe(model: type[BaseModel], err: ValidationError) -> list[str]:
    problems = []
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"])
        if problem["type"] == "extra_forbidden":
            valid = ", ".join(_valid_keys(model, problem["loc"]))
            problems.append(f"unknown key '{key}' (valid keys here: {valid})")
        else:
            problems.append(f"'{key}': {problem['msg']}")
    return problems


def parse_config(model: type[BaseModel], data: dict[str, Any], where: str = "config") -> Any:
    """Validate ``data`` against ``model``.

    Raises:
        ConfigError: naming ``where``, each bad key, and for unknown keys the valid ones.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{where}: " + "; ".join(_describe(model, err))) from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["optim"]["lr"]`` from ``"optim.lr"``, creating sections. None is set like any value
    (``--max_questions null`` lifts a recipe's cap); callers with optional flags skip their unset ones."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[leaf] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict, naming the file on any error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values")
    return data


class TrainDataConfig(StrictModel):
    task: Literal["squad", "instruction", "chat", "pairs", "multiple_choice"] = Field(
        "squad", description="Format of the training file (see slmkit.data.tasks)."
    )
    path: str = Field(
        "bundled:squad", description="Training file; 'bundled:squad' is the shipped SQuAD dev set."
    )
    split: Literal["train", "eval", "all"] = Field(
        "train", description="SQuAD only: the agreed by-article split to train on (never 'eval')."
    )
    context: Literal["gold", "retrieved", "passage"] = Field(
        "gold",
        description="SQuAD only: 'gold' gives the gold paragraph as context; 'retrieved' gives the "
        "top_k chunks a retriever returns with the gold one among them (RAFT-style), and for "
        "abstain_share of questions leaves it out with the abstention sentence as target; "
        "'passage' trains a reader: one passage per example (the gold chunk with the answer, or "
        "for `negatives` of the questions also a retrieved chunk without it, with an empty answer).",
    )
    kb: str | None = Field(
        None,
        description="Knowledge base for context: retrieved; default: one built from the training "
        "articles in output_dir/kb (never from eval articles).",
    )
    top_k: int = Field(
        3, ge=1, description="Passages per retrieved-context example (match ask.retrieval.top_k)."
    )
    abstain_share: float = Field(0.2, ge=0.0, lt=1.0, description="Share of abstention examples.")
    retrieval: RetrievalConfig = Field(
        default_factory=RetrievalConfig,
        description="SQuAD context 'retrieved'/'passage': how distractors and hard negatives are retrieved. "
        "A run resumed after the defaults changed must keep the ranking it started with (pin it here): "
        "other negatives would also reshuffle which questions are held out for validation.",
    )
    index: IndexConfig = Field(
        default_factory=IndexConfig,
        description="How the default knowledge base (output_dir/kb) is built when `kb` is unset. Like "
        "`retrieval`, it decides the negatives and so the validation split: a run (or a calibration "
        "of its model) on a fresh machine must build it as the run first did (pin it here).",
    )
    negatives: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="context 'passage' only: share of questions that also get a "
        "hard-negative passage (retrieved, without the answer; target: no answer).",
    )
    val_path: str | None = Field(None, description="Validation file; without it, val_fraction is held out.")
    val_fraction: float = Field(0.05, gt=0.0, lt=1.0, description="Share held out for validation.")
    max_examples: int | None = Field(None, ge=1, description="Use only the first N training examples.")
    max_val_examples: int | None = Field(200, ge=1, description="Cap on validation examples (eval cost).")
    max_seq_len: int = Field(
        512, ge=32, description="Longer examples are left-truncated (counted in the log)."
    )


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: Literal["auto", "all-linear"] | list[str] = Field(
        "auto",
        description="Layers to adapt: auto (the family's attention projections: q/k/v/o_proj for "
        "Llama, Qwen2, Mistral, Gemma; c_attn + attn.c_proj for GPT-2; q/k/v_proj + dense for phi; "
        "q/k/v/out_proj for BART; q/k/v/o for T5; see slmkit.models.families), all-linear (every "
        "linear layer but the output head), or a list of module names.",
    )
    init_from: str | None = Field(
        None,
        description="Start the adapters from a trained LoRA instead of from zero: an adapter folder or a "
        "packaged adapter (slmkit-reader-270m) trained on this run's model with the same r and targets. "
        "One adapter comes out, as from a run of its own (to continue training the shipped reader).",
    )


class QuantizationSettings(StrictModel):
    """The frozen base of a ``qlora`` run (see docs/qlora.md for measured memory)."""

    backend: Literal["auto", "torchao-int8", "bnb-nf4"] = Field(
        "auto",
        description=(
            "auto: bitsandbytes NF4 4-bit on CUDA, torchao int8 weight-only on CPU (bitsandbytes "
            "on CPU gives wrong LoRA gradients once the model has run any inference pass)."
        ),
    )


class OptimConfig(StrictModel):
    optimizer: Literal["adamw", "adamw-8bit", "paged-adamw-8bit"] = Field(
        "adamw",
        description=(
            "adamw (torch); adamw-8bit / paged-adamw-8bit (bitsandbytes: 8-bit optimizer state; "
            "paging needs CUDA and falls back to plain 8-bit on CPU)."
        ),
    )
    lr: float = Field(5e-5, gt=0.0, description="Peak learning rate (cosine decay after warmup).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Share of steps spent warming up.")
    batch_size: int = Field(4, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    epochs: float = Field(1.0, gt=0.0, description="Passes over the training set (ignored if max_steps).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")


class DistributedConfig(StrictModel):
    """How the processes of ``slmkit train --nproc N`` (or torchrun / accelerate launch) share a run;
    ignored in a single process (docs/scaling.md)."""

    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="ddp: every process holds the whole model, gradients are averaged; fsdp: "
        "parameters, gradients and optimizer state are sharded over the processes (PyTorch FSDP2), "
        "for models that do not fit one device. Both train the same model as one process.",
    )


class TrainConfig(StrictModel):
    """A fine-tuning run; ``slmkit train RECIPE.yaml`` reads its ``train:`` section."""

    model: str = Field(DEFAULT_BASE_MODEL, description="Base model: packaged name, folder, .gguf or hub id.")
    method: Literal["full", "lora", "qlora"] = Field(
        "lora", description="full fine-tune, LoRA adapters, or LoRA on a frozen quantized base (qlora)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    output_dir: str = Field("runs/finetune", description="Where checkpoints, metrics and the final model go.")
    data: TrainDataConfig = Field(default_factory=TrainDataConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="bfloat16 autocast for the forward pass (weights stay fp32); auto: where it is "
        "faster (CUDA with bf16, CPUs with AMX), fp32 elsewhere.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations: less memory, ~30% slower."
    )
    eval_every: int = Field(50, ge=1, description="Optimizer steps between validation passes.")
    save_every: int = Field(50, ge=1, description="Optimizer steps between resumable checkpoints.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many validations without improvement."
    )
    seed: int = Field(0, description="Seed for data order, dropout and initialisation.")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)


class StudentArchitecture(StrictModel):
    """A new student built from the teacher's model class, with its tokenizer; the rest of the
    teacher's configuration (vocabulary, positions, activation, norms) is kept."""

    layers: int = Field(ge=1, description="Transformer blocks (num_hidden_layers).")
    hidden_size: int = Field(ge=8, description="Width of the residual stream (hidden_size).")
    heads: int = Field(ge=1, description="Attention heads (num_attention_heads); must divide hidden_size.")
    kv_heads: int | None = Field(
        None,
        ge=1,
        description="Key/value heads (grouped-query attention); must divide heads. Default: heads.",
    )
    intermediate_size: int = Field(ge=1, description="Width of the MLP (intermediate_size).")
    tie_embeddings: bool = Field(
        True, description="Share the input embedding with the output head (saves vocab × hidden parameters)."
    )

    @model_validator(mode="after")
    def _divisible(self) -> StudentArchitecture:
        if self.hidden_size % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden_size ({self.hidden_size})")
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        return self


class StudentConfig(StrictModel):
    model: str | None = Field(
        None,
        description="An existing student: packaged name, folder, .gguf or hub id (or give architecture).",
    )
    architecture: StudentArchitecture | None = Field(
        None, description="A new student trained from scratch with the teacher's tokenizer (or give model)."
    )
    init: Literal["random", "teacher"] = Field(
        "random",
        description="New students only. random: trained from scratch. teacher: copy the teacher's "
        "embeddings, final norm and evenly spaced layers (DistilBERT-style); needs the teacher's "
        "hidden_size, heads, kv_heads and intermediate_size, only fewer layers.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> StudentConfig:
        if (self.model is None) == (self.architecture is None):
            raise ValueError(
                "give exactly one of 'model' (an existing student) or 'architecture' (a new one)"
            )
        if self.model is not None and self.init != "random":
            raise ValueError("'init' applies to a new student (architecture), not to an existing model")
        return self


class DistillEvalSettings(StrictModel):
    questions: int = Field(
        40,
        ge=0,
        description="Teacher and student answer this many SQuAD eval questions (gold paragraph as "
        "context), spread over the eval articles; 0 skips the comparison.",
    )
    path: str = Field("bundled:squad", description="SQuAD-format file whose 'eval' split is asked.")
    max_new_tokens: int = Field(32, ge=1, description="Upper bound on answer tokens.")


class DistillConfig(StrictModel):
    """A distillation run; ``slmkit distill RECIPE.yaml`` reads its ``distill:`` section."""

    teacher: str = Field(DEFAULT_BASE_MODEL, description="Teacher: packaged name, folder, .gguf or hub id.")
    student: StudentConfig = Field(description="The model that learns: an existing one or a new one.")
    method: Literal["auto", "logit", "sequence"] = Field(
        "auto",
        description="logit: match the teacher's temperature-softened token distributions (needs the "
        "same vocabulary); sequence: train on the teacher's generated answers (any tokenizers); "
        "auto: logit when the vocabularies match, else sequence.",
    )
    temperature: float = Field(
        2.0, gt=0.0, description="Softens both distributions for the KL term (logit method)."
    )
    alpha: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the KL term; 1 - alpha weighs cross-entropy on the gold answers (logit).",
    )
    kl_tokens: Literal["answer", "all"] = Field(
        "answer",
        description="Logit method: where the KL term is taken. answer: the answer tokens only; all: "
        "every token, context and question included (a denser signal that also teaches the student "
        "to read like the teacher, at a vocabulary projection per token). Cross-entropy stays on the "
        "gold answer tokens.",
    )
    teacher_max_new_tokens: int = Field(
        48, ge=1, description="Sequence method: upper bound on each teacher answer (greedy decoding)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")
    output_dir: str = Field("runs/distill", description="Where checkpoints, metrics and the student go.")
    data: TrainDataConfig = Field(default_factory=TrainDataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="bfloat16 autocast for both forward passes (weights stay fp32); auto: where it is "
        "faster (CUDA with bf16, CPUs with AMX), fp32 elsewhere.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute student activations: less memory.")
    eval_every: int = Field(50, ge=1, description="Optimizer steps between validation passes.")
    save_every: int = Field(50, ge=1, description="Optimizer steps between resumable checkpoints.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many validations without improvement."
    )
    seed: int = Field(0, description="Seed for data order, dropout and the student's initialisation.")
    eval: DistillEvalSettings = Field(default_factory=DistillEvalSettings)

    def train_config(self) -> TrainConfig:
        """The fine-tuning loop's view of this run: a full fine-tune of the student."""
        shared = self.model_dump(
            include={
                "device",
                "output_dir",
                "data",
                "optim",
                "bf16",
                "gradient_checkpointing",
                "eval_every",
                "save_every",
                "early_stopping_patience",
                "seed",
            }
        )
        return TrainConfig(model=self.student.model or self.teacher, method="full", **shared)


class EvalDataConfig(StrictModel):
    path: str = Field(
        "bundled:squad", description="Dataset file; 'bundled:squad' is the shipped SQuAD dev set."
    )
    format: Literal["auto", "squad", "qa", "multiple_choice", "text"] = Field(
        "auto",
        description="squad, qa (JSONL with answers), multiple_choice, text (perplexity); auto detects.",
    )
    split: Literal["train", "eval", "all"] = Field(
        "eval", description="SQuAD only: the held-out eval articles by default."
    )
    limit: int | None = Field(
        None, ge=1, description="Evaluate N questions (or texts) spread evenly over the dataset."
    )


class EvalConfig(AskConfig):
    """``slmkit eval``: one model, one dataset, one context mode; a recipe's ``eval:`` section.

    Every ``ask`` setting (model, backend, reading, retrieval, abstention, generation) is one too, so
    an evaluation answers exactly as ``slmkit ask`` would; perplexity always uses transformers.
    """

    context: Literal["closed-book", "gold", "retrieved"] = Field(
        "retrieved",
        description="closed-book (question only), gold (the dataset's own passage), retrieved (RAG over kb).",
    )
    kb: str | None = Field(None, description="Knowledge base folder (needed for context 'retrieved').")
    data: EvalDataConfig = Field(default_factory=EvalDataConfig)
    metrics: list[str] | None = Field(
        None, description="Metric names (see slmkit.eval.metrics.METRIC_NAMES); default: all that apply."
    )
    output_dir: str = Field("runs/eval", description="Where predictions.jsonl and metrics.json go.")

    def ask_config(self) -> AskConfig:
        """The ``ask`` settings of this evaluation."""
        return AskConfig.model_validate(self.model_dump(include=set(AskConfig.model_fields)))


class ExperimentModel(StrictModel):
    """One model of an experiment: an existing model, or one a training recipe produces."""

    name: str = Field(description="Short label for the report, e.g. 'smollm2-lora'.")
    model: str | None = Field(None, description="Packaged name, folder, .gguf or hub id.")
    train: str | None = Field(
        None, description="A train recipe; its final model is reused if present, else trained first."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Recipe overrides, e.g. {'optim.max_steps': 80}."
    )
    method: str | None = Field(
        None, description="Label for the report; default: the recipe's method or 'base'."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ExperimentModel:
        if (self.model is None) == (self.train is None):
            raise ValueError(f"model '{self.name}': give exactly one of 'model' or 'train'")
        return self


class ExperimentKB(StrictModel):
    path: str = Field("runs/experiments/kb", description="Knowledge base folder; built if missing.")
    sources: list[str] = Field(
        default_factory=list, description="Files to index; empty: the bundled SQuAD eval articles."
    )
    holdout_articles: int = Field(
        0,
        ge=0,
        description="Bundled SQuAD only: leave the last N eval articles out of the KB, so their questions "
        "measure abstention.",
    )


class ExperimentConfig(StrictModel):
    """``slmkit experiment MATRIX.yaml``: models × context modes on one dataset, one report."""

    title: str = Field("slmkit experiment", description="Report title.")
    output_dir: str = Field("runs/experiments/default", description="Report and per-scenario results.")
    data: EvalDataConfig = Field(default_factory=EvalDataConfig)
    kb: ExperimentKB | None = Field(None, description="Needed for the 'retrieved' context.")
    models: list[ExperimentModel] = Field(min_length=1, description="The models to compare.")
    contexts: list[Literal["closed-book", "gold", "retrieved"]] = Field(
        default_factory=lambda: ["closed-book", "gold", "retrieved"], min_length=1
    )
    metrics: list[str] | None = Field(None, description="Metric names; default: all that apply.")
    isolate: bool = Field(
        True, description="Evaluate each model in its own process, so peak memory is per model."
    )
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    abstention: AbstentionConfig = Field(default_factory=AbstentionConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)


class SynthFilterConfig(StrictModel):
    """Which generated question/answer pairs are kept (every drop is counted with its reason)."""

    grounding: Literal["span", "support"] = Field(
        "span",
        description="span: the answer must occur in its chunk (after SQuAD normalisation: case, "
        "punctuation, articles); support: at least min_support of the answer's claim words must occur "
        "in the chunk (allows paraphrased answers).",
    )
    min_support: float = Field(
        1.0, ge=0.0, le=1.0, description="grounding 'support': share of claim words the chunk must hold."
    )
    min_question_words: int = Field(4, ge=1, description="Shorter questions are dropped (too_short).")
    max_answer_words: int = Field(
        12, ge=1, description="Longer answers are dropped (answer_too_long): targets should be short spans."
    )
    duplicate_similarity: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="A question whose embedding cosine similarity to an already kept question is at "
        "least this is a near-duplicate (dropped).",
    )


class SynthConfig(StrictModel):
    """``slmkit synth``: question/answer pairs from knowledge-base chunks; a recipe's ``synth:`` section."""

    kb: str | None = Field(
        None,
        description="Knowledge base folder to write questions about; 'bundled:squad-train' builds one "
        "from the bundled SQuAD training articles in output_dir/kb (never the eval articles).",
    )
    teacher: str = Field(
        DEFAULT_BASE_MODEL,
        description="Model that writes the pairs: packaged name, folder, .gguf or hub id; with "
        "backend.base_url, the model name the OpenAI-compatible server knows.",
    )
    backend: BackendConfig = Field(
        default_factory=BackendConfig,
        description="How the teacher runs; backend.base_url selects an OpenAI-compatible server (its API "
        "key is read from the variable backend.api_key_env names).",
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Local teacher precision.")
    prompt: Literal["auto", "instruct", "few_shot"] = Field(
        "auto",
        description="How the teacher is asked: instruct (one instruction, for chat models) or few_shot "
        "(worked examples to continue, for base models); auto picks by whether the teacher has a chat "
        "template.",
    )
    n: int = Field(100, ge=1, description="Question/answer pairs to keep.")
    max_chunks: int | None = Field(
        None, ge=1, description="Give up after trying this many chunks (default: every chunk once)."
    )
    min_chunk_words: int = Field(
        25, ge=1, description="Chunks with fewer words are skipped (headings, fragments)."
    )
    output_dir: str = Field(
        "runs/synth", description="attempts.jsonl, pairs.jsonl, train.jsonl and summary.json go here."
    )
    top_k: int = Field(3, ge=1, description="Passages per training example (match ask.retrieval.top_k).")
    abstain_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of training examples without the gold chunk, "
        "whose target is the abstention sentence.",
    )
    seed: int = Field(0, description="Seed for the chunk order and the example shuffling.")
    generation: GenerationConfig = Field(
        default_factory=lambda: GenerationConfig(max_new_tokens=64),
        description="Teacher decoding (greedy by default).",
    )
    filters: SynthFilterConfig = Field(default_factory=SynthFilterConfig)


class QueryTuneConfig(StrictModel):
    """``slmkit index tune``: a query adapter for a knowledge base (see slmkit.train.query_tuning)."""

    r: int = Field(16, ge=1, description="LoRA rank on every linear layer of the embedder.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    lr: float = Field(5e-4, gt=0.0, description="AdamW learning rate (linear decay after 5 % warm-up).")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1, description="Questions per step.")
    scale: float = Field(
        20.0,
        gt=0.0,
        description="Cosine-to-logit scale of the softmax over chunks (sentence-transformers' MNRL uses 20).",
    )
    max_candidates: int = Field(
        200_000,
        ge=1,
        description="Chunks every question is scored against in training: all of a smaller knowledge base "
        "(every chunk a negative, the hard ones included), else its positives and a random sample.",
    )
    holdout: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of the chunks whose questions are held out of training to measure recall before "
        "and after (held out whole: no question about them is trained on).",
    )
    fusion_sample: int = Field(
        2000,
        ge=1,
        description="Training questions the hybrid fusion weight (retrieval.lexical_weight) is chosen on: "
        "a random sample of that many, when there are more.",
    )
    save_every: int = Field(
        100,
        ge=1,
        description="Steps between checkpoints of the training, which a stopped `index tune` resumes from "
        "(also saved when SIGTERM or Ctrl-C stops it).",
    )
    seed: int = Field(0)


class RerankerTrainConfig(StrictModel):
    """``slmkit rerank train``: a cross-encoder that re-orders retrieved chunks (slmkit.train.reranker).

    Trained on a SQuAD-format file's questions: each question's own chunk against the hardest
    chunks the default hybrid retriever returns for it from the other paragraphs.
    """

    squad: str | None = Field(
        None, description="SQuAD-format training file (default: the bundled SQuAD v1.1 dev)."
    )
    split: Literal["train", "eval", "all"] = Field(
        "train",
        description="Which articles of the file to train on: the project's split by article (train: never "
        "the 10 eval articles of the bundled SQuAD file), or all of them (a file of your own).",
    )
    base: str = Field("all-minilm-l6-v2", description="Embedder whose transformer becomes the cross-encoder.")
    init: str | None = Field(
        None,
        description="Start from this reranker (a packaged name or a folder; made from `base`) instead of a "
        "fresh head: a further epoch. Give another `seed` to draw other hard negatives; the held-out "
        "questions stay the same whatever the seed.",
    )
    kb: str = Field(
        ".slmkit/reranker-kb",
        description="Knowledge base of the training articles' paragraphs, built if absent: where hard "
        "negatives are retrieved from (so no other article's text is seen).",
    )
    output_dir: str = Field("runs/reranker", description="Checkpoints, then the trained reranker in final/.")
    negatives: int = Field(3, ge=1, description="Hard negatives per question (from the top `pool` hits).")
    pool: int = Field(10, ge=1, description="Retrieved hits the hard negatives are drawn from.")
    in_batch_negatives: int = Field(1, ge=1, description="Other questions' chunks added as negatives.")
    max_length: int = Field(256, ge=32, description="Question + chunk tokens the cross-encoder reads.")
    lr: float = Field(5e-5, gt=0.0)
    epochs: float = Field(1.0, gt=0.0)
    batch_size: int = Field(16, ge=1, description="Questions per step.")
    warmup: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps with a rising learning rate.")
    holdout: int = Field(300, ge=0, description="Training questions held out to measure the reranker.")
    max_questions: int | None = Field(
        None, ge=1, description="Train on at most this many questions (a quick try)."
    )
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps (a killed run resumes).")
    seed: int = Field(0, description="Seeds the hard negatives' draw, the question sample and the order.")
