"""Train a cross-encoder reranker (slmkit.models.reranker) on a SQuAD-format file's questions.

Each training row is a question, the chunk of its own paragraph that holds the answer, and
``negatives`` chunks the default hybrid retriever ranks high for it from *other* paragraphs: the
confusions the reranker exists to undo. Negatives that contain one of the gold answers are skipped
(another paragraph may answer too; calling it wrong would teach the model to doubt right chunks).
The loss is sentence-transformers' MultipleNegativesRankingLoss for cross-encoders: a softmax over
the positive, the hard negatives and ``in_batch_negatives`` of the other questions' chunks.

Hard negatives are retrieved from a knowledge base of the training articles only, so the reranker
never reads a paragraph of a held-out article, not even as a negative. ``holdout`` training
questions (whole paragraphs' worth, chosen by paragraph) are kept out to measure the result.

Training runs in sentence-transformers' ``CrossEncoderTrainer`` (a transformers ``Trainer``): it
checkpoints every ``save_steps`` and a rerun of the same command resumes from the last checkpoint.
``init`` starts from a trained reranker instead of a fresh head: a further epoch, on hard negatives
drawn anew under another ``seed``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit import __version__
from slmkit.config import RerankerTrainConfig, RetrievalConfig
from slmkit.data.prompts import titled_text
from slmkit.data.squad import SquadArticle, bundled_squad, load_squad, split_articles
from slmkit.data.squad_metrics import normalize_answer
from slmkit.errors import ConfigError
from slmkit.models.reranker import (
    FROZEN,
    TOKEN_TYPES,
    new_cross_encoder,
    read_reranker_info,
    resolve_reranker_path,
    save_reranker,
    trained_cross_encoder,
)
from slmkit.rag.documents import Chunk
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever, rerank_hits
from slmkit.train.rag_examples import paragraphs_kb

logger = logging.getLogger(__name__)

RECALL_DEPTHS = (1, 3, 5)
# Reranker shares of the final score measured on the held-out questions (retrieval.rerank_weight).
WEIGHT_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
# The held-out paragraphs do not move with `seed`: a further epoch from `init` under another seed
# must not train on the questions its starting point was measured on.
HOLDOUT_SEED = 0


@dataclass(frozen=True)
class RerankQuestion:
    """A question, its paragraph's key, its answers, and the chunk that holds one of them."""

    question: str
    paragraph: tuple[str, int]
    answers: tuple[str, ...]
    positive: Chunk


def squad_questions(articles: Sequence[SquadArticle], kb: KnowledgeBase) -> list[RerankQuestion]:
    """Every answerable question of ``articles`` with the chunk of ``kb`` that holds its answer
    (the paragraph's first chunk when no chunk holds it whole)."""
    by_paragraph: dict[tuple[str, int], list[Chunk]] = {}
    for chunk in kb.chunks:
        key = (chunk.metadata.get("article"), chunk.metadata.get("paragraph"))
        by_paragraph.setdefault(key, []).append(chunk)
    questions = []
    for article in articles:
        for paragraph in article.paragraphs:
            chunks = by_paragraph.get((article.title, paragraph.index), [])
            if not chunks:
                continue
            normalised = [normalize_answer(c.text) for c in chunks]
            for qa in paragraph.qas:
                if qa.is_impossible or not qa.answers:
                    continue
                answers = [normalize_answer(a) for a in qa.answers]
                holding = [
                    c
                    for c, text in zip(chunks, normalised, strict=True)
                    if any(a in text for a in answers if a)
                ]
                questions.append(
                    RerankQuestion(
                        qa.question, (article.title, paragraph.index), tuple(answers), (holding or chunks)[0]
                    )
                )
    return questions


def training_rows(
    questions: Sequence[RerankQuestion], retriever: Retriever, negatives: int, pool: int, seed: int
) -> list[dict[str, str]]:
    """One row per question with enough hard negatives: ``question``, ``positive``,
    ``negative_1`` ... ``negative_n`` (see the module docstring)."""
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    rows = []
    batch = 64
    for start in tqdm(range(0, len(questions), batch), desc="mining hard negatives", unit="batch"):
        chunk_of = questions[start : start + batch]
        for q, hits in zip(
            chunk_of, retriever.search_many([q.question for q in chunk_of], top_k=pool), strict=True
        ):
            candidates = [
                h.chunk
                for h in hits
                if (h.chunk.metadata.get("article"), h.chunk.metadata.get("paragraph")) != q.paragraph
                and not any(a and a in normalize_answer(h.chunk.text) for a in q.answers)
            ]
            if len(candidates) < negatives:
                continue
            picked = sorted(rng.sample(range(len(candidates)), negatives))
            row = {"question": q.question, "positive": titled_text(q.positive.title, q.positive.text)}
            for i, index in enumerate(picked, start=1):
                row[f"negative_{i}"] = titled_text(candidates[index].title, candidates[index].text)
            rows.append(row)
    return rows


def rerank_recall(
    score: Any,
    questions: Sequence[RerankQuestion],
    retriever: Retriever,
    depth: int,
    weights: Sequence[float] = (1.0,),
) -> dict[float, dict[str, float]]:
    """Recall@1/3/5 and MRR of the retriever's top ``depth`` re-ordered by ``score(question, texts)``
    (None: the retriever's own order) at each reranker ``weight`` (``retrieval.rerank_weight``: the
    reranker's share of the final score); a hit is a chunk of the question's paragraph. The
    reranker scores each question's hits once, whatever the number of weights."""
    ranks: dict[float, list[int | None]] = {w: [] for w in weights}
    for q in questions:
        hits = retriever.search(q.question, top_k=depth)
        scores = None
        if score is not None and hits:
            scores = score(q.question, [titled_text(h.chunk.title, h.chunk.text) for h in hits])
        for weight in weights:
            ordered = hits if scores is None else rerank_hits(hits, scores, weight)
            keys = [(h.chunk.metadata.get("article"), h.chunk.metadata.get("paragraph")) for h in ordered]
            ranks[weight].append(keys.index(q.paragraph) + 1 if q.paragraph in keys else None)
    return {w: _recall_scores(r) for w, r in ranks.items()}


def _recall_scores(ranks: Sequence[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    result = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in RECALL_DEPTHS}
    result["mrr"] = sum(1 / r for r in ranks if r is not None) / n
    return {k: round(v, 4) for k, v in result.items()}


def rerank_questions(
    config: RerankerTrainConfig,
) -> tuple[Retriever, list[RerankQuestion], list[RerankQuestion]]:
    """The first-stage retriever over ``config``'s knowledge base (built once, then reused) and
    the training and held-out questions, as ``train_reranker`` splits them."""
    articles = load_squad(config.squad or bundled_squad())
    if config.split != "all":
        articles = split_articles(articles, config.split)
    kb = paragraphs_kb(articles, Path(config.kb))
    # The first stage alone: its confusions are what the reranker learns to undo.
    retriever = Retriever(kb, RetrievalConfig(reranker=None))
    train, heldout = _hold_out(squad_questions(articles, kb), config.holdout, HOLDOUT_SEED)
    if config.max_questions is not None:
        train = random.Random(config.seed).sample(train, min(config.max_questions, len(train)))
    return retriever, train, heldout


def train_reranker(config: RerankerTrainConfig) -> Path:
    """Train (or resume) per ``config``; returns the reranker folder (``output_dir/final``).

    Raises:
        ConfigError: the ``datasets`` package (sentence-transformers' trainer needs it) is missing.
    """
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise ConfigError("training a reranker needs the datasets package: pip install 'slmkit[hf]'")
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss
    from transformers.trainer_utils import get_last_checkpoint

    started = time.monotonic()
    output = Path(config.output_dir)
    # Before the minutes of mining: a starting reranker that does not fit the run fails at once.
    model = _starting_model(config)
    retriever, train, heldout = rerank_questions(config)
    rows = training_rows(train, retriever, config.negatives, config.pool, config.seed)
    logger.info("%d training rows from %d questions; %d held out", len(rows), len(train), len(heldout))

    for name, parameter in model.model.named_parameters():
        parameter.requires_grad = name not in FROZEN and name != TOKEN_TYPES
    # Question and chunk get the same segment embedding: llama.cpp, which runs the reranker where
    # it is installed, gives every token segment 0 (slmkit.models.reranker).
    with torch.no_grad():
        types = model.model.get_parameter(TOKEN_TYPES)
        types[1:] = types[0]
    args = CrossEncoderTrainingArguments(
        output_dir=str(output),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup,  # a float below 1: a share of the steps (transformers 5)
        save_steps=config.save_steps,
        save_total_limit=1,
        logging_steps=10,
        logging_first_step=True,
        seed=config.seed,
        use_cpu=True,
        dataloader_drop_last=True,
        report_to=[],
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model, num_negatives=config.in_batch_negatives),
    )
    last = get_last_checkpoint(str(output)) if output.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    model.model.eval()

    def score(question: str, texts: list[str]) -> np.ndarray:
        return np.asarray(model.predict([(question, t) for t in texts], show_progress_bar=False))

    before = rerank_recall(None, heldout, retriever, 20)[1.0]
    by_weight = rerank_recall(score, heldout, retriever, RetrievalConfig().rerank_depth, WEIGHT_GRID)
    after = rerank_recall(score, heldout, retriever, 20)[1.0]
    info = {
        "base": config.base,
        "max_length": config.max_length,
        "slmkit_version": __version__,
        "config": config.model_dump(),
        "train_questions": len(train),
        "train_rows": len(rows),
        "steps": trainer.state.global_step,
        "loss_curve": [
            {"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e
        ],
        "heldout_questions": len(heldout),
        "heldout_before": before,
        "heldout_after": after,
        # For retrieval.rerank_weight: the top rerank_depth hits re-ordered at each weight.
        "heldout_by_weight": {str(w): r for w, r in by_weight.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    final = output / "final"
    save_reranker(model, final, info)
    logger.info("held-out recall before %s, after %s", json.dumps(before), json.dumps(after))
    return final


def _starting_model(config: RerankerTrainConfig) -> Any:
    """A fresh one-score head on ``config.base``, or the reranker ``config.init`` to train further.

    Raises:
        ConfigError: ``init`` was made from another embedder or reads another length.
    """
    if config.init is None:
        return new_cross_encoder(config.base, config.max_length)
    folder = resolve_reranker_path(config.init)
    info = read_reranker_info(folder)
    made = (info["base"], int(info.get("max_length", 256)))
    if made != (config.base, config.max_length):
        raise ConfigError(
            f"rerank.init: {config.init} was made from {made[0]} reading {made[1]} tokens; this run "
            f"says base {config.base}, max_length {config.max_length}"
        )
    return trained_cross_encoder(folder, info)


def _hold_out(
    questions: list[RerankQuestion], count: int, seed: int
) -> tuple[list[RerankQuestion], list[RerankQuestion]]:
    """Whole paragraphs' questions held out until ``count`` questions are (none of their paragraphs
    is trained on, so the held-out score is for chunks the reranker never saw as positives)."""
    paragraphs = sorted({q.paragraph for q in questions})
    random.Random(seed).shuffle(paragraphs)
    held: set[tuple[str, int]] = set()
    held_count = 0
    for key in paragraphs:
        if held_count >= count:
            break
        held.add(key)
        held_count += sum(1 for q in questions if q.paragraph == key)
    return [q for q in questions if q.paragraph not in held], [q for q in questions if q.paragraph in held]
