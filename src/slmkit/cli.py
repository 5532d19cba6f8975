"""The ``slmkit`` command line: a thin layer over the Python API, one command per verb."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from slmkit.config import (
    AskConfig,
    IndexConfig,
    QueryTuneConfig,
    TrainConfig,
    load_yaml,
    parse_config,
    set_dotted,
)
from slmkit.data.squad import bundled_squad
from slmkit.errors import SlmkitError
from slmkit.interrupt import Interrupted, stop_on_signals
from slmkit.models.registry import DEFAULT_MODEL

app = typer.Typer(
    help="Small language models that answer from your documents, with citations, on a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
index_app = typer.Typer(help="Build, extend and inspect a knowledge base.", no_args_is_help=True)
app.add_typer(index_app, name="index")
rerank_app = typer.Typer(
    help="Train the cross-encoder that re-orders retrieved chunks.", no_args_is_help=True
)
app.add_typer(rerank_app, name="rerank")

KbOption = Annotated[Path, typer.Option("--kb", help="Knowledge base folder.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML recipe (CLI flags override it).")
]

DEMO_QUESTIONS = (
    "Which NFL team represented the AFC at Super Bowl 50?",
    "What is the recommended tire pressure for a Toyota Corolla?",
)


def _same_command() -> str:
    """The command line that was run, as the user would type it again (to resume)."""
    return shlex.join(["slmkit", *sys.argv[1:]])


@contextlib.contextmanager
def _stops_cleanly(outcome: str) -> Iterator[None]:
    """SIGTERM or Ctrl-C ends the command with one line, ``stopped by SIGTERM: <outcome>``, and the
    exit status conventional for the signal (143 or 130); clean-ups on the way out run first."""
    with stop_on_signals():
        try:
            yield
        except Interrupted as stop:
            typer.echo(f"{stop}: {outcome}", err=True)
            raise typer.Exit(stop.exit_code) from None


def _recipe_section(config: Path | None, section: str) -> dict[str, Any]:
    if config is None:
        return {}
    data = load_yaml(config)
    value = data.get(section, {})
    return value if isinstance(value, dict) else {}


# Where each CLI flag lands in the config; flags left unset keep the recipe's (or default) value.
_INDEX_FLAGS = {
    "embedder": "embedder",
    "chunk_tokens": "chunking.chunk_tokens",
    "overlap_tokens": "chunking.overlap_tokens",
    "text_field": "ingest.text_field",
    "title_field": "ingest.title_field",
    "index_type": "vector_index.type",
    "store": "store",
}
_TUNE_FLAGS = {"epochs": "epochs", "lr": "lr", "holdout": "holdout"}
# Teacher-written questions `index tune` asks for when given no pairs: on Medical Meadow, 4,754 pairs
# lifted recall@1 by a quarter (docs/retrieval.md); a few hundred take a small teacher minutes.
TUNE_QUESTIONS = 300
# The teacher that writes them: Gemma-3-270M (few-shot) kept 26 % of SQuAD chunks against SmolLM2's
# 17 % (docs/synthetic-data.md) and 17 pairs against 7 from the same 142 chunks of Debian manuals.
TUNE_TEACHER = "gemma3-270m"
_ASK_FLAGS = {
    "model": "model",
    "dtype": "dtype",
    "retrieval": "retrieval.mode",
    "top_k": "retrieval.top_k",
    "max_new_tokens": "generation.max_new_tokens",
    "min_relevance": "abstention.min_relevance",
    "min_coverage": "abstention.min_coverage",
    "min_support": "abstention.min_support",
    "max_no_answer": "abstention.max_no_answer",
    "reading": "reading",
    "reranker": "retrieval.reranker",
    "backend": "backend.type",
    "base_url": "backend.base_url",
}


_EVAL_FLAGS = {
    "model": "model",
    "dtype": "dtype",
    "context": "context",
    "kb": "kb",
    "data": "data.path",
    "format": "data.format",
    "split": "data.split",
    "limit": "data.limit",
    "metrics": "metrics",
    "output_dir": "output_dir",
    "top_k": "retrieval.top_k",
    "reranker": "retrieval.reranker",
    "max_new_tokens": "generation.max_new_tokens",
    "backend": "backend.type",
    "base_url": "backend.base_url",
}


def _merged(
    config: Path | None, section: str, paths: dict[str, str], flags: dict[str, Any]
) -> dict[str, Any]:
    data = _recipe_section(config, section)
    for name, value in flags.items():
        if value is not None:  # a flag not given leaves the recipe's value
            set_dotted(data, paths[name], value)
    return data


def _index_config(config: Path | None, **flags: Any) -> IndexConfig:
    data = _merged(config, "index", _INDEX_FLAGS, flags)
    return parse_config(IndexConfig, data, f"{config or 'options'} [index]")


def _ask_config(config: Path | None, **flags: Any) -> AskConfig:
    data = _merged(config, "ask", _ASK_FLAGS, flags)
    return parse_config(AskConfig, data, f"{config or 'options'} [ask]")


@index_app.command("build")
def index_build(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or hf://NAME?split=S&text_field=F.")],
    kb: KbOption,
    config: ConfigOption = None,
    embedder: Annotated[str | None, typer.Option(help="Embedder name, folder or hub id.")] = None,
    chunk_tokens: Annotated[int | None, typer.Option(help="Max tokens per chunk.")] = None,
    overlap_tokens: Annotated[int | None, typer.Option(help="Tokens shared by neighbouring chunks.")] = None,
    text_field: Annotated[str | None, typer.Option(help="Record field / CSV column with the text.")] = None,
    title_field: Annotated[str | None, typer.Option(help="Record field / CSV column with the title.")] = None,
    index_type: Annotated[
        str | None, typer.Option(help="Vector index: flat (exact), hnsw or ivf-pq (docs/scaling.md).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Keep the knowledge base in PostgreSQL (pgvector): postgresql://USER@HOST:PORT/DB#TABLE; "
            "--kb then records where it lives, and ask/serve/index add find it there."
        ),
    ] = None,
) -> None:
    """Create (or atomically replace) a knowledge base from SOURCES."""
    from slmkit.rag.knowledge_base import KnowledgeBase

    cfg = _index_config(config, **_flags(locals(), _INDEX_FLAGS))
    with _stops_cleanly(f"{kb} is as it was (an unfinished build publishes nothing)"):
        _, report = KnowledgeBase.build(kb, sources, cfg)
    typer.echo(
        f"built {kb}: {report.documents} documents → {report.chunks_added} chunks "
        f"({report.duplicates_skipped} duplicates skipped) in {report.seconds:.1f}s "
        f"({report.chunks_per_second:,.1f} chunks/s)"
    )


@index_app.command("add")
def index_add(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or hf:// datasets to append.")],
    kb: KbOption,
) -> None:
    """Append SOURCES to a knowledge base, skipping content it already holds."""
    from slmkit.rag.knowledge_base import KnowledgeBase

    with _stops_cleanly(f"{kb} is as it was (an unfinished add publishes nothing)"):
        _, report = KnowledgeBase.open(kb).add(sources)
    typer.echo(
        f"added to {kb}: {report.chunks_added} chunks from {report.documents} documents "
        f"({report.duplicates_skipped} duplicates skipped)"
    )


@index_app.command("tune")
def index_tune(
    kb: KbOption,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="JSONL of {question, chunk_id} (slmkit synth's pairs.jsonl) or {question, passage}. "
            "Without it, a teacher model writes questions about the chunks first (slmkit synth).",
        ),
    ] = None,
    questions: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Without --pairs: questions the teacher writes (default {TUNE_QUESTIONS})."
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(help=f"Without --pairs: the model that writes them (default {TUNE_TEACHER})."),
    ] = None,
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the pairs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    holdout: Annotated[float | None, typer.Option(help="Share of chunks held out to measure recall.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Also keep the adapter here (it is always copied into the KB).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Publish even if held-out recall did not improve.")] = False,
) -> None:
    """Adapt retrieval to a knowledge base's own documents, from question pairs (given, or written).

    Without --pairs, a teacher model first writes questions about the chunks, as `slmkit synth`
    does, into KB/.tune-synth (kept: a stopped run resumes there, and a later tune reuses them).
    Chooses the hybrid fusion weight (retrieval.lexical_weight) on the training questions and trains
    a query adapter (how questions are embedded); measures each on held-out questions and publishes
    a new version of the knowledge base with what improved there. The chunks and their vectors are
    not touched; the previous version stays live until then. Stopped by SIGTERM or Ctrl-C (or killed),
    the same command resumes the training from its last checkpoint (KB/.tune-checkpoint).
    """
    from slmkit.rag.knowledge_base import KnowledgeBase
    from slmkit.train.query_tuning import choose_lexical_weight, read_pairs, tune_query_encoder

    settings = _merged(config, "tune", _TUNE_FLAGS, _flags(locals(), _TUNE_FLAGS))
    tune_config = parse_config(QueryTuneConfig, settings, f"{config or 'options'} [tune]")
    base = KnowledgeBase.open(kb)
    if pairs is None:
        pairs = _teacher_pairs(base, kb, questions, teacher)
    found, unmatched = read_pairs(pairs, base)
    # Outside the knowledge base's versions, so it outlives a stopped run (and only that).
    checkpoint = Path(kb) / ".tune-checkpoint"
    stopped = (
        f"{kb} is as it was (nothing is published before training ends); training's last checkpoint, "
        f"if it got that far, is kept in {checkpoint}: resume with {_same_command()}"
    )
    with tempfile.TemporaryDirectory(prefix=".tune-", dir=kb) as tmp:
        target = output or Path(tmp) / "query-adapter"
        with _stops_cleanly(stopped):
            fusion = choose_lexical_weight(base, found, tune_config)
            result = tune_query_encoder(base, found, target, tune_config, checkpoint_dir=checkpoint)
            published = result.improved or force
            weight = fusion.chosen if fusion.improved or (force and fusion.chosen != fusion.current) else None
            if published or weight is not None:
                base.tuned(result.adapter if published else None, weight)
    shutil.rmtree(checkpoint, ignore_errors=True)
    report = {
        "kb": str(kb),
        "pairs": len(found),
        "unmatched_passages": unmatched,
        "train_pairs": result.train_pairs,
        "heldout_pairs": result.heldout_pairs,
        "heldout_recall_before": result.before,
        "heldout_recall_after": result.after,
        "published": published,
        "lexical_weight": {
            "before": fusion.current,
            "chosen": fusion.chosen,
            "heldout_hybrid_recall_before": fusion.heldout_current,
            "heldout_hybrid_recall_chosen": fusion.heldout_chosen,
            "published": weight is not None,
        },
        "seconds": round(result.seconds, 1),
    }
    typer.echo(json.dumps(report, indent=2))
    if not published:
        typer.echo(
            f"held-out recall did not improve: {kb} keeps its query embedder (--force publishes anyway)",
            err=True,
        )


def _teacher_pairs(base: Any, kb: Path, questions: int | None, teacher: str | None) -> Path:
    """``slmkit synth`` for ``index tune``: questions about the chunks of ``base`` (the knowledge base
    at ``kb``, already open), written into KB/.tune-synth (resuming what is there); returns its
    pairs file."""
    from slmkit.config import SynthConfig
    from slmkit.train.synth import PAIRS_FILE

    settings = {
        "kb": str(kb),
        "output_dir": str(Path(kb) / ".tune-synth"),
        "n": questions or TUNE_QUESTIONS,
        "teacher": teacher or TUNE_TEACHER,
    }
    cfg = parse_config(SynthConfig, settings, "index tune [synth]")
    _run_synth(cfg, base, summary_to_stderr=True)
    return Path(cfg.output_dir) / PAIRS_FILE


@index_app.command("info")
def index_info(
    kb: KbOption, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Print counts, embedder and sizes of a knowledge base."""
    from slmkit.rag.knowledge_base import KnowledgeBase

    info = KnowledgeBase.open(kb).info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "bytes":
            value = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in value.items())
        elif key == "total_bytes":
            value = f"{value / 1e6:.2f} MB"
        elif value is None:
            value = "-"
        typer.echo(f"{key:>15}: {value}")


def _flags(arguments: dict[str, Any], paths: dict[str, str] = _ASK_FLAGS) -> dict[str, Any]:
    """The config-bearing options among a command's arguments (those ``paths`` maps into a config)."""
    return {name: value for name, value in arguments.items() if name in paths}


def _load_answerer(kb: Path | None, no_rag: bool, config: Path | None, flags: dict[str, Any]) -> Any:
    from slmkit.rag.answer import Answerer

    if kb is None and not no_rag:
        raise SlmkitError("give a knowledge base with --kb DIR, or --no-rag to answer closed-book")
    return Answerer.load(None if no_rag else kb, _ask_config(config, **flags))


ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Packaged name, folder, .gguf or hub id.")
]
DtypeOpt = Annotated[str | None, typer.Option(help="float32 or bfloat16.")]
ModeOpt = Annotated[str | None, typer.Option("--retrieval", help="dense, bm25 or hybrid.")]
TopKOpt = Annotated[int | None, typer.Option(help="Passages given to the model.")]
MaxTokOpt = Annotated[int | None, typer.Option(help="Max generated tokens.")]
RelOpt = Annotated[float | None, typer.Option(help="Abstain below this best cosine similarity.")]
CovOpt = Annotated[float | None, typer.Option(help="Abstain below this share of question names found.")]
SupOpt = Annotated[float | None, typer.Option(help="Abstain below this answer support share.")]
NoAnswerOpt = Annotated[
    float | None,
    typer.Option(help="Per-passage reading: abstain when every passage's no-answer probability is this+."),
]
ReadingOpt = Annotated[
    str | None,
    typer.Option(help="auto, per-passage (a reader reads each passage) or joint (all in one prompt)."),
]
RerankerOpt = Annotated[
    str | None,
    typer.Option(help="Cross-encoder that re-orders the retrieved chunks: a name or folder; none: don't."),
]
OptionalKbOpt = Annotated[Path | None, typer.Option("--kb", help="Knowledge base folder.")]
NoRagOpt = Annotated[bool, typer.Option("--no-rag", help="Answer closed-book, without the knowledge base.")]
BackendOpt = Annotated[
    str | None,
    typer.Option(help="Generator: auto, transformers, llama.cpp or openai (an OpenAI-compatible server)."),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="OpenAI-compatible server (vLLM, llama.cpp) to generate with, e.g. http://host:8000/v1."
    ),
]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: OptionalKbOpt = None,
    no_rag: NoRagOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOption = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = None,
    retrieval: ModeOpt = None,
    top_k: TopKOpt = None,
    max_new_tokens: MaxTokOpt = None,
    min_relevance: RelOpt = None,
    min_coverage: CovOpt = None,
    min_support: SupOpt = None,
    max_no_answer: NoAnswerOpt = None,
    reading: ReadingOpt = None,
    reranker: RerankerOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
) -> None:
    """Answer QUESTION from the knowledge base, citing sources, or abstain."""
    answer = _load_answerer(kb, no_rag, config, _flags(locals())).ask(question)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2))
        return
    _print_answer(answer)


def _print_answer(answer: Any) -> None:
    from slmkit.serve.chat import format_citations

    typer.echo(answer.text)
    if answer.abstained:
        typer.echo(f"  (abstained: {answer.reason})")
    for line in format_citations(answer):
        typer.echo(line)
    t = answer.timings
    cost = f"  ({t['total']:.2f}s: retrieval {t['retrieval']:.2f}s"
    if "reading" in t:
        cost += f", reading {len(answer.no_answer)} passage(s) {t['reading']:.2f}s"
    if answer.completion_tokens:
        cost += f", generation {t['generation']:.2f}s, {answer.completion_tokens} tokens"
        if answer.tokens_per_second:  # a decode rate needs two tokens or more
            cost += f" at {answer.tokens_per_second:.1f} tok/s"
    typer.echo(cost + ")")


@app.command()
def chat(
    kb: OptionalKbOpt = None,
    no_rag: NoRagOpt = False,
    config: ConfigOption = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = None,
    retrieval: ModeOpt = None,
    top_k: TopKOpt = None,
    max_new_tokens: MaxTokOpt = None,
    min_relevance: RelOpt = None,
    min_coverage: CovOpt = None,
    min_support: SupOpt = None,
    max_no_answer: NoAnswerOpt = None,
    reading: ReadingOpt = None,
    reranker: RerankerOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
) -> None:
    """Chat in the terminal: answers stream, history is kept, /sources shows the passages."""
    from slmkit.serve.chat import run_chat

    run_chat(_load_answerer(kb, no_rag, config, _flags(locals())), use_retrieval=not no_rag)


@app.command()
def serve(
    kb: OptionalKbOpt = None,
    no_rag: NoRagOpt = False,
    config: ConfigOption = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = None,
    retrieval: ModeOpt = None,
    top_k: TopKOpt = None,
    max_new_tokens: MaxTokOpt = None,
    min_relevance: RelOpt = None,
    min_coverage: CovOpt = None,
    min_support: SupOpt = None,
    max_no_answer: NoAnswerOpt = None,
    reading: ReadingOpt = None,
    reranker: RerankerOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None, typer.Option(envvar="SLMKIT_API_KEY", help="Require 'Authorization: Bearer KEY'.")
    ] = None,
    max_queue: Annotated[int, typer.Option(help="Requests that may wait for the model; more get 503.")] = 8,
    max_tokens_limit: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = 512,
    ui: Annotated[
        bool, typer.Option("--ui", help="Also serve the web UI at /ui (needs slmkit[ui]).")
    ] = False,
    max_upload_mb: Annotated[int, typer.Option(help="Largest file the web UI accepts, in MiB.")] = 50,
) -> None:
    """Serve over HTTP: OpenAI-compatible /v1/chat/completions and /v1/completions, /ask; docs at /docs."""
    from slmkit.serve.api import ServerLimits, create_app, serve_forever

    if ui:
        from slmkit.serve.webui import require_gradio

        require_gradio()  # before the model loads: a missing extra should fail in a second, not a minute
    flags = _flags(locals())
    limits = ServerLimits(
        max_tokens=max_tokens_limit,
        max_queue=max_queue,
        api_key=api_key,
        max_upload_bytes=max_upload_mb << 20,
    )
    with _stops_cleanly("the server has shut down"):
        answerer = _load_answerer(kb, no_rag, config, flags)
        app = create_app(answerer, answerer.config.model, limits, ui=ui)
        if ui:
            typer.echo(f"web UI: http://{host}:{port}/ui/")
        serve_forever(app, host, port)


def _apply_overrides(data: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """Set ``--optim.lr 1e-4 --method full`` into ``data`` (values parsed as YAML); returns ``data``."""
    import yaml

    if len(args) % 2:
        raise SlmkitError(f"overrides come in '--key value' pairs; got: {' '.join(args)}")
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not key.startswith("--"):
            raise SlmkitError(f"expected an override like --optim.lr, got '{key}'")
        set_dotted(data, key[2:].replace("-", "_"), yaml.safe_load(value))
    return data


def _resume_hint(output_dir: str) -> str:
    return f"the last checkpoint in {output_dir} (if any) is intact; resume with: {_same_command()}"


def _exit_if_interrupted(result: dict[str, Any], output_dir: str) -> None:
    """A run that SIGTERM or Ctrl-C stopped after a step says where it stands and how to resume,
    then exits with the signal's status (143 or 130)."""
    if not result.get("interrupted"):
        return
    signum = getattr(signal, result["interrupted"])
    typer.echo(
        f"stopped by {result['interrupted']} after step {result['step']} of {result['total_steps']}; "
        f"checkpoint saved in {Path(output_dir) / 'checkpoint'}. Resume with: {_same_command()}",
        err=True,
    )
    raise typer.Exit(128 + int(signum))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with a train: section.")],
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train data-parallel in N processes on this machine (one per GPU, or CPU processes); "
            "the global batch stays optim.batch_size x optim.grad_accum. For several machines, run "
            "the same command under torchrun or accelerate launch instead (docs/scaling.md).",
        ),
    ] = 1,
) -> None:
    """Fine-tune a model as RECIPE says; extra '--key value' pairs override it (e.g. --optim.max_steps 10).

    Re-running the same command resumes from the last checkpoint in output_dir.
    """
    from slmkit.train.distributed import launch, launched_distributed
    from slmkit.train.run import finetune

    data = _apply_overrides(_recipe_section(recipe, "train"), list(ctx.args))
    config = parse_config(TrainConfig, data, f"{recipe} [train]")
    if nproc > 1 and not launched_distributed():
        raise typer.Exit(launch(nproc, ["train", str(recipe), *ctx.args]))
    with _stops_cleanly(_resume_hint(config.output_dir)):
        result = finetune(config)
    _exit_if_interrupted(result, config.output_dir)
    if int(os.environ.get("RANK", "0")):
        return  # rank 0 reports for all
    best = f", best validation loss {result['best_val']:.4f}" if result.get("best_val") is not None else ""
    typer.echo(
        f"trained {result['step']} steps at {result['tokens_per_second']:.0f} tok/s{best}; "
        f"model: {result['model_dir']}"
    )


@rerank_app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def rerank_train(
    ctx: typer.Context,
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with a rerank: section.")],
) -> None:
    """Train a cross-encoder reranker as RECIPE says; '--key value' pairs override it.

    Prints held-out recall@1/3/5 before and after re-ranking. Re-running the same command resumes
    from the last checkpoint in output_dir; the reranker is written to output_dir/final, which
    retrieval.reranker (or --reranker) accepts.
    """
    from slmkit.config import RerankerTrainConfig
    from slmkit.models.reranker import read_reranker_info
    from slmkit.train.reranker import train_reranker

    data = _apply_overrides(_recipe_section(recipe, "rerank"), list(ctx.args))
    config = parse_config(RerankerTrainConfig, data, f"{recipe} [rerank]")
    with _stops_cleanly(_resume_hint(config.output_dir)):
        final = train_reranker(config)
    info = read_reranker_info(final)
    typer.echo(
        json.dumps(
            {
                "reranker": str(final),
                "steps": info["steps"],
                "heldout_questions": info["heldout_questions"],
                "heldout_before": info["heldout_before"],
                "heldout_after": info["heldout_after"],
                "heldout_by_weight": info.get("heldout_by_weight"),
            },
            indent=2,
        )
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill(
    ctx: typer.Context,
    recipe: Annotated[Path, typer.Argument(help="YAML recipe with a distill: section.")],
) -> None:
    """Distil a teacher into a smaller student as RECIPE says; '--key value' pairs override it.

    Logit distillation when the vocabularies match, sequence-level (teacher-written answers) when
    they do not. Re-running the same command resumes from the last checkpoint in output_dir.
    """
    from slmkit.config import DistillConfig
    from slmkit.eval.distillation import evaluate_pair
    from slmkit.train.distill import distill as run_distill
    from slmkit.train.distill import format_report

    data = _apply_overrides(_recipe_section(recipe, "distill"), list(ctx.args))
    config = parse_config(DistillConfig, data, f"{recipe} [distill]")
    with _stops_cleanly(_resume_hint(config.output_dir)):
        result = run_distill(config, evaluate_pair)
    _exit_if_interrupted(result, config.output_dir)
    if "parameter_compression" not in result:  # stopped before the last step
        typer.echo(f"stopped after {result['step']} steps; re-run the same command to resume")
        return
    typer.echo(format_report(result))


@app.command()
def merge(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder, e.g. runs/x/final/adapter.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the standalone model.")],
    base: Annotated[
        str | None, typer.Option(help="Base model (default: the one in the adapter's recipe.yaml).")
    ] = None,
) -> None:
    """Merge LoRA/QLoRA adapters into their full-precision base and save a standalone model folder."""
    from slmkit.train.merge import merge_adapter

    typer.echo(f"merged model: {merge_adapter(adapter, output, base)}")


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Packaged name, model folder (e.g. runs/x/final) or .gguf.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .gguf file to write.")],
    format_: Annotated[str, typer.Option("--format", help="Export format (gguf: llama.cpp).")] = "gguf",
    quant: Annotated[
        str, typer.Option(help="f32 (answers as the source; see docs/serving.md), f16, q8_0 or q4_k_m.")
    ] = "f32",
) -> None:
    """Export a model to GGUF for llama.cpp: packaged, fine-tuned, or a LoRA adapter (merged first)."""
    from slmkit.models.gguf_export import export_gguf

    if format_ != "gguf":
        raise SlmkitError(f"unknown export format '{format_}'; supported: gguf")
    # An adapter folder is merged into its base first (cached): llama.cpp could load a LoRA GGUF
    # beside its base, but one merged file is simpler to deploy and runs at the base model's speed.
    result = export_gguf(model, output, quant)
    typer.echo(f"wrote {result.path} ({result.quant}, {result.bytes / 1e6:.1f} MB) from {model}")


@app.command()
def models() -> None:
    """List the packaged models and where their weights are."""
    from slmkit.models.registry import PACKAGED_MODELS

    for spec in PACKAGED_MODELS.values():
        typer.echo(f"{spec.name:<24} {spec.kind:<10} {spec.description}\n{'':<35}package: {spec.package}")


@app.command()
def demo(
    kb: Annotated[Path, typer.Option("--kb", help="Where to build the demo knowledge base.")] = Path(
        ".slmkit/demo-kb"
    ),
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the knowledge base exists.")] = False,
) -> None:
    """Build a knowledge base from the bundled SQuAD v1.1 dev paragraphs and answer two questions."""
    from slmkit.rag.answer import Answerer
    from slmkit.rag.knowledge_base import KnowledgeBase

    if rebuild or not (kb / "CURRENT").exists():
        typer.echo(f"building {kb} from the bundled SQuAD v1.1 dev set (2,067 paragraphs)…")
        _, report = KnowledgeBase.build(kb, [str(bundled_squad())])
        typer.echo(f"  {report.chunks_added} chunks in {report.seconds:.1f}s")
    answerer = Answerer.load(kb)
    for question in DEMO_QUESTIONS:
        typer.echo(f"\nQ: {question}")
        _print_answer(answerer.ask(question))


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    # The handler's level, not only the loggers': some libraries (bm25s) set their own logger to DEBUG.
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    if not verbose:
        # Through the variables transformers reads when it is first imported, so that a command that
        # never needs it (`ask` on llama.cpp) does not pay the second its import takes.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        # bitsandbytes and torchao (the qlora extra, imported by transformers when installed) warn on
        # every CPU run about optional GPU kernels; nothing slmkit runs outside QLoRA training uses them.
        for noisy in ("bitsandbytes", "torchao", "torch.utils._pytree"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command("eval")
def eval_(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Dataset: SQuAD JSON, QA JSONL, multiple-choice JSONL, .txt (default: bundled:squad)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name, folder, .gguf or hub id.")
    ] = None,
    context: Annotated[str | None, typer.Option(help="closed-book | gold | retrieved.")] = None,
    kb: Annotated[Path | None, typer.Option(help="Knowledge base for --context retrieved.")] = None,
    reranker: RerankerOpt = None,
    split: Annotated[str | None, typer.Option(help="SQuAD split: eval (default), train, all.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N questions.")] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metric names (default: all that apply).")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Where predictions.jsonl and metrics.json go.")
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Score this JSONL of {id, prediction} instead of generating.")
    ] = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Evaluate a model on a dataset (closed-book, gold passage or retrieved context) and save the results."""
    from slmkit.config import EvalConfig
    from slmkit.eval.runner import run_eval, score_predictions

    flags = {
        "data": data,
        "model": model,
        "context": context,
        "kb": str(kb) if kb else None,
        "reranker": reranker,
        "split": split,
        "limit": limit,
        "metrics": [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        "output_dir": output_dir,
        "backend": backend,
        "base_url": base_url,
    }
    cfg = parse_config(
        EvalConfig, _merged(config, "eval", _EVAL_FLAGS, flags), f"{config or 'options'} [eval]"
    )
    result = score_predictions(cfg, predictions) if predictions else run_eval(cfg)
    if as_json:
        typer.echo(json.dumps(result.scores, indent=2))
    else:
        typer.echo(result.to_markdown())
    typer.echo(f"results: {result.output_dir}", err=as_json)


@app.command()
def harness(
    tasks: Annotated[
        str, typer.Argument(help="Comma-separated lm-eval tasks or groups, e.g. medqa_local,hellaswag.")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model name, folder, .gguf or hub id.")
    ] = DEFAULT_MODEL,
    limit: Annotated[
        float | None, typer.Option(help="Examples per task (a count, or a fraction < 1).")
    ] = None,
    num_fewshot: Annotated[int | None, typer.Option(help="Few-shot examples per prompt.")] = None,
    batch_size: Annotated[int, typer.Option(help="Requests per forward pass.")] = 4,
    include_path: Annotated[Path | None, typer.Option(help="Folder of extra task YAMLs.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the full results JSON here.")] = None,
    confirm_run_unsafe_code: Annotated[
        bool, typer.Option(help="Allow tasks that execute model-written code (e.g. humaneval).")
    ] = False,
) -> None:
    """Run standard benchmarks through lm-evaluation-harness on an slmkit model."""
    from slmkit.eval.harness import run_harness

    count = None if limit is None else (int(limit) if limit >= 1 else limit)
    result = run_harness(
        model,
        [t.strip() for t in tasks.split(",") if t.strip()],
        limit=count,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        include_path=include_path,
        confirm_run_unsafe_code=confirm_run_unsafe_code,
    )
    typer.echo(result.to_markdown())
    if output:
        result.save(output)


_SYNTH_FLAGS = {
    "kb": "kb",
    "teacher": "teacher",
    "teacher_url": "backend.base_url",
    "teacher_backend": "backend.type",
    "prompt": "prompt",
    "n": "n",
    "output_dir": "output_dir",
    "max_chunks": "max_chunks",
    "seed": "seed",
}


@app.command()
def synth(
    recipe: Annotated[Path | None, typer.Argument(help="YAML recipe with a synth: section.")] = None,
    kb: Annotated[str | None, typer.Option(help="Knowledge base folder, or bundled:squad-train.")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="Teacher model (with --teacher-url: the server's model name).")
    ] = None,
    teacher_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible server of the teacher, e.g. http://host:8000/v1 (API key: "
            "$OPENAI_API_KEY, or the variable backend.api_key_env names)."
        ),
    ] = None,
    teacher_backend: Annotated[
        str | None, typer.Option(help="auto, transformers, llama.cpp or openai.")
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="auto, instruct (chat teachers) or few_shot (base teachers).")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", "-n", help="Question/answer pairs to keep.")] = None,
    output_dir: Annotated[
        str | None, typer.Option("--output", "-o", help="Folder for attempts, pairs, train.jsonl, summary.")
    ] = None,
    max_chunks: Annotated[int | None, typer.Option(help="Try at most this many chunks.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for chunk order and example shuffling.")] = None,
) -> None:
    """Write grounded question/answer training pairs from a knowledge base with a teacher model.

    Re-running the same command resumes after the chunks already tried.
    """
    from slmkit.config import SynthConfig

    flags = _flags(locals(), _SYNTH_FLAGS)
    cfg = parse_config(
        SynthConfig, _merged(recipe, "synth", _SYNTH_FLAGS, flags), f"{recipe or 'options'} [synth]"
    )
    _run_synth(cfg)


def _run_synth(cfg: Any, knowledge_base: Any = None, summary_to_stderr: bool = False) -> None:
    """Run synth for ``cfg`` on ``knowledge_base`` (else the one ``cfg.kb`` names), stopping cleanly,
    and print its summary: `slmkit synth`, and `index tune` without pairs (whose stdout is its report)."""
    from slmkit.models.backends import load_generator
    from slmkit.train.synth import format_summary, open_kb, synthesize

    kept = f"the chunks tried so far are kept in {cfg.output_dir}; resume with: {_same_command()}"
    with _stops_cleanly(kept):
        knowledge_base = open_kb(cfg) if knowledge_base is None else knowledge_base
        generator = load_generator(cfg.teacher, cfg.backend, dtype=cfg.dtype)
        result = synthesize(knowledge_base, generator, cfg)
    typer.echo(format_summary(result.summary), err=summary_to_stderr)


@app.command()
def experiment(
    matrix: Annotated[Path, typer.Argument(help="YAML with an experiment: section (models × contexts).")],
) -> None:
    """Run a scenario grid and write a Markdown + HTML report with tables and plots."""
    from slmkit.experiment import load_experiment, run_experiment

    result = run_experiment(load_experiment(matrix))
    typer.echo(
        f"{len(result.scenarios)} scenarios\nreport: {result.report.html}\n        {result.report.markdown}"
    )


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results.json written by `slmkit experiment`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default: next to RESULTS).")
    ] = None,
) -> None:
    """Re-render report.md / report.html / plots from a saved results.json."""
    from slmkit.eval.report import load_results, write_report

    scenarios, record, title = load_results(results)
    files = write_report(out or results.parent, scenarios, title=title, provenance=record)
    typer.echo(f"{files.html}\n{files.markdown}")


def main() -> None:
    """Console entry point: user errors print one clear line and exit with status 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SlmkitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
