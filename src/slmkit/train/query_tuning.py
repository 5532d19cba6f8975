"""Query adapters for a knowledge base (``slmkit index tune``): questions embedded to find its chunks.

The knowledge base's chunk vectors stay fixed; a LoRA on the embedder learns to embed questions
close to the chunks that answer them (slmkit.models.query_adapter). Because the chunk vectors are
stored, scoring a question against *every* chunk costs one matrix product, so each step is a
softmax over the whole knowledge base with the question's chunks as targets: the in-batch negatives
of sentence-transformers' MultipleNegativesRankingLoss, with every hard negative included and no
chunk re-encoded. Only short questions go through the transformer, which is why a few thousand
pairs train in minutes on a laptop CPU.

Pairs come from a JSONL file, one per line: ``question`` with ``chunk_id`` (or ``chunk_ids``), as
``slmkit synth`` writes them to ``pairs.jsonl``, or with ``passage``, the text that answers it
(matched to the chunks made from it: each chunk whose words are nearly all in the passage).

A share of the chunks is held out whole with every question about them, and recall on those
questions is measured before and after: the report says whether the adapter generalises to
chunks it never saw, which is what a knowledge base that grows needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from slmkit import __version__
from slmkit.atomic import atomic_folder
from slmkit.config import QueryTuneConfig
from slmkit.data.jsonfile import parse_json
from slmkit.errors import InputError
from slmkit.interrupt import Interrupted, deferred_stop, stop_requested
from slmkit.models.families import ALL_LINEAR
from slmkit.models.query_adapter import QUERY_ADAPTER_FILE
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.train.checkpoint import checkpoint_state, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

RECALL_DEPTHS = (1, 5, 20)
# The convex fusion weights index tune chooses among (retrieval.lexical_weight).
LEXICAL_WEIGHTS = tuple(i / 10 for i in range(11))
# A chunk belongs to a passage when this share of its words occur in the passage (chunks are cut
# from documents, so a chunk of the passage's own document scores ~1.0; another one rarely > 0.6).
_CONTAINED = 0.8
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class QueryPair:
    """A question and the ids of the chunks that answer it."""

    question: str
    positives: tuple[int, ...]


@dataclass(frozen=True)
class QueryTuneResult:
    """What a tuning run produced: the adapter folder and held-out recall before and after."""

    adapter: Path
    train_pairs: int
    heldout_pairs: int
    before: dict[str, float]
    after: dict[str, float]
    seconds: float

    @property
    def improved(self) -> bool:
        """Held-out MRR went up (no held-out questions: trust the training loss)."""
        return not self.heldout_pairs or self.after["mrr@20"] > self.before["mrr@20"]


def read_pairs(path: Path, kb: KnowledgeBase) -> tuple[list[QueryPair], int]:
    """Question/chunk pairs from a JSONL file (see the module docstring); also returns how many
    passages matched no chunk of ``kb`` (they are skipped).

    Raises:
        InputError: unreadable file, a line that is not a JSON object, no ``question``, a chunk id
            outside the knowledge base, or no usable pair at all; naming the file and line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read question pairs: {err}") from None
    pairs, unmatched = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        row = parse_json(line, path, number)
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object with 'question' and 'chunk_id' or 'passage'")
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{where}: 'question' must be a non-empty string")
        positives = _positives(row, kb, where)
        if positives:
            pairs.append(QueryPair(question.strip(), positives))
        else:
            unmatched += 1
    if not pairs:
        raise InputError(
            f"{path}: no question matched a chunk of {kb.path} ({unmatched} passage(s) unmatched)"
        )
    return pairs, unmatched


def _positives(row: dict[str, Any], kb: KnowledgeBase, where: str) -> tuple[int, ...]:
    if "chunk_id" in row or "chunk_ids" in row:
        ids = row["chunk_ids"] if "chunk_ids" in row else [row["chunk_id"]]
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise InputError(f"{where}: 'chunk_id' must be an integer ('chunk_ids' a list of them)")
        outside = [i for i in ids if not 0 <= i < len(kb.chunks)]
        if outside:
            raise InputError(f"{where}: chunk id {outside[0]} is not in {kb.path} ({len(kb.chunks)} chunks)")
        return tuple(sorted(set(ids)))
    passage = row.get("passage")
    if not isinstance(passage, str) or not passage.strip():
        raise InputError(f"{where}: give 'chunk_id' (or 'chunk_ids') or a non-empty 'passage'")
    return match_passage(kb, passage)


def match_passage(kb: KnowledgeBase, passage: str, candidates: int = 20) -> tuple[int, ...]:
    """Ids of the chunks cut from ``passage``: among its best BM25 matches, those whose words are
    nearly all in it."""
    words = set(_WORD.findall(passage.lower()))
    _, ids = kb.lexical.search(passage, candidates)
    found = []
    for chunk_id in ids:
        chunk_words = _WORD.findall(kb.chunks[int(chunk_id)].text.lower())
        if chunk_words and sum(w in words for w in chunk_words) / len(chunk_words) >= _CONTAINED:
            found.append(int(chunk_id))
    return tuple(sorted(found))


def split_heldout(
    pairs: Sequence[QueryPair], share: float, seed: int
) -> tuple[list[QueryPair], list[QueryPair]]:
    """Hold out ``share`` of the chunks with every question about them: (train, held out).

    A question may rest on several chunks (a passage cut in two, an answer the knowledge base holds
    once for two documents). Every chunk of a held-out question is kept out of training, and a
    training question sharing one of those chunks is left out of both sides: it would train on a
    chunk recall is measured on (and find no score for it: training scores no held-out chunk).
    """
    chunks = sorted({c for p in pairs for c in p.positives})
    random.Random(seed).shuffle(chunks)
    held = set(chunks[: round(len(chunks) * share)])
    heldout = [p for p in pairs if held.intersection(p.positives)]
    unseen = held.union(*(p.positives for p in heldout))
    return [p for p in pairs if not unseen.intersection(p.positives)], heldout


def dense_recall(kb: KnowledgeBase, vectors: np.ndarray, pairs: Sequence[QueryPair]) -> dict[str, float]:
    """Recall@1/5/20 and MRR@20 of dense search for ``pairs`` given their question ``vectors``."""
    if not pairs:
        return {}
    _, ids = kb.dense.search(np.asarray(vectors, dtype=np.float32), max(RECALL_DEPTHS))
    return ranking_recall([row.tolist() for row in ids], pairs)


def ranking_recall(rankings: Sequence[Sequence[int]], pairs: Sequence[QueryPair]) -> dict[str, float]:
    """Recall@1/5/20 and MRR@20 of ``rankings`` (each pair's chunk ids, best first)."""
    ranks = []
    for pair, row in zip(pairs, rankings, strict=True):
        positives = set(pair.positives)
        ranks.append(next((r for r, c in enumerate(row, start=1) if c in positives), None))
    scores = {f"recall@{k}": sum(1 for r in ranks if r and r <= k) / len(ranks) for k in RECALL_DEPTHS}
    scores["mrr@20"] = sum(1 / r for r in ranks if r) / len(ranks)
    return {key: round(value, 4) for key, value in scores.items()}


@dataclass(frozen=True)
class FusionChoice:
    """The hybrid fusion weight chosen for a knowledge base on its training questions.

    Attributes:
        current: The weight it ranks with now (its own, else the default).
        chosen: The best on the training questions: recall@1, then MRR; a tie keeps ``current``.
        train: Recall by weight on the training questions (a sample of ``fusion_sample``).
        heldout_current: Held-out recall at ``current`` (empty without held-out questions).
        heldout_chosen: Held-out recall at ``chosen``.
    """

    current: float
    chosen: float
    train: dict[float, dict[str, float]]
    heldout_current: dict[str, float]
    heldout_chosen: dict[str, float]

    @property
    def improved(self) -> bool:
        """A new weight that does at least as well on held-out questions as the current one."""
        if self.chosen == self.current:
            return False
        return not self.heldout_current or _rank_key(self.heldout_chosen) >= _rank_key(self.heldout_current)


def choose_lexical_weight(
    kb: KnowledgeBase, pairs: Sequence[QueryPair], config: QueryTuneConfig | None = None
) -> FusionChoice:
    """Choose the convex fusion weight (``retrieval.lexical_weight``) for ``kb`` on the training
    side of ``pairs`` (the hold-out of :func:`tune_query_encoder`, same seed), with the query
    embedder it has now, and measure it on the held-out side. No one weight suits every knowledge
    base: SQuAD's best is 0.6, where Medical Meadow (many documents name what a question names)
    loses 29 % of its training recall@1 at 0.6 against 0.3 (docs/retrieval.md)."""
    from slmkit.config import RetrievalConfig
    from slmkit.rag.retrieval import Retriever

    config = config or QueryTuneConfig()
    train, heldout = split_heldout(pairs, config.holdout, config.seed)
    if len(train) > config.fusion_sample:
        train = random.Random(config.seed).sample(list(train), config.fusion_sample)
    retriever = Retriever(kb, RetrievalConfig(reranker=None))
    current = retriever.lexical_weight
    weights = sorted({*LEXICAL_WEIGHTS, current})
    depth = max(RECALL_DEPTHS)
    orders = retriever.convex_orders([p.question for p in train], weights, depth)
    by_weight = {w: ranking_recall(orders[w], train) for w in weights}
    # Best recall@1, then MRR; among equals the current weight, else the one nearest to it.
    chosen = max(weights, key=lambda w: (*_rank_key(by_weight[w]), w == current, -abs(w - current)))
    held: dict[float, dict[str, float]] = {}
    if heldout:
        orders = retriever.convex_orders([p.question for p in heldout], [current, chosen], depth)
        held = {w: ranking_recall(orders[w], heldout) for w in (current, chosen)}
    logger.info("fusion weight for %s: %s -> %s (training %s)", kb.path, current, chosen, by_weight[chosen])
    return FusionChoice(current, chosen, by_weight, held.get(current, {}), held.get(chosen, {}))


def _rank_key(scores: dict[str, float]) -> tuple[float, float]:
    return scores["recall@1"], scores["mrr@20"]


def tune_query_encoder(
    kb: KnowledgeBase,
    pairs: Sequence[QueryPair],
    output: Path,
    config: QueryTuneConfig | None = None,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> QueryTuneResult:
    """Train a query adapter for ``kb`` on ``pairs`` and write it to ``output`` (atomically).

    With ``checkpoint_dir``, the training state is saved there every ``config.save_every`` steps
    and when SIGTERM or Ctrl-C asks for a stop (inside :func:`slmkit.interrupt.stop_on_signals`, as
    the CLI runs it: the step under way finishes first), and a later call for the same knowledge
    base, pairs and settings resumes from it and ends as the uninterrupted run would have. A
    checkpoint of another run is left alone with a warning. The caller removes the folder once it
    has what it wants of the adapter.

    Raises:
        InputError: no pair left to train on after the hold-out.
        Interrupted: a stop was asked for; the checkpoint (if any) holds the last step.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from slmkit.models.embedder import load_embedder

    config = config or QueryTuneConfig()
    start = time.perf_counter()
    train, heldout = split_heldout(pairs, config.holdout, config.seed)
    if not train:
        raise InputError(f"no question pair left to train on ({len(pairs)} given, all held out)")
    torch.manual_seed(config.seed)
    # Always the knowledge base's own embedder: the adapter must map into the space its chunks are in.
    model = load_embedder(kb.config.embedder, device="cpu")

    def encode(questions: Sequence[str]) -> np.ndarray:
        return model.encode(list(questions), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    before = dense_recall(kb, encode([p.question for p in heldout]), heldout) if heldout else {}
    # Held-out chunks are not scored in training: as ever-present negatives, they would teach the
    # adapter to steer away from exactly the chunks its recall is then measured on.
    held = {c for p in heldout for c in p.positives}
    candidates = _candidates(len(kb.chunks), train, held, config)
    matrix = torch.from_numpy(np.ascontiguousarray(kb.dense.vectors(candidates), dtype=np.float32))
    column = {int(c): j for j, c in enumerate(candidates)}
    # LoRA layers are injected into the embedder's transformer in place; ``adapter`` saves them.
    adapter = get_peft_model(
        model[0].auto_model,
        LoraConfig(
            r=config.r,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=ALL_LINEAR,  # PEFT's every linear layer, as the reader's LoRA
        ),
    )
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr)
    batches = _batches(len(train), config)
    steps = len(batches)
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    fingerprint = _fingerprint(kb, train, config)
    done = _resume(checkpoint_dir, fingerprint, model, optimizer, scheduler)
    model.train()
    bar = tqdm(total=steps, initial=done, desc="tune", unit="step", disable=not progress, dynamic_ncols=True)
    with deferred_stop():
        for batch_ids in batches[done:]:
            batch = [train[i] for i in batch_ids]
            features = model.preprocess([p.question for p in batch])
            embedded = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
            logits = config.scale * embedded @ matrix.T
            target = torch.full_like(logits, float("-inf"))
            for row, pair in enumerate(batch):
                target[row, [column[c] for c in pair.positives]] = 0.0
            # -log(probability mass on the question's own chunks): one chunk or several.
            loss = (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits + target, dim=1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            # A stop asked for during the last step is not acted on: training is done, and the rest
            # (measuring, saving the adapter) takes seconds.
            stop = stop_requested() if done < steps else None
            if checkpoint_dir is not None and (stop or (done < steps and done % config.save_every == 0)):
                state = {"step": done, "fingerprint": fingerprint}
                save_checkpoint(checkpoint_dir, model, optimizer, scheduler, state)
            if stop:
                bar.close()
                raise Interrupted(stop)
    bar.close()
    model.eval()
    after = dense_recall(kb, encode([p.question for p in heldout]), heldout) if heldout else {}
    seconds = time.perf_counter() - start
    description = {
        "embedder": kb.config.embedder,
        "knowledge_base": str(kb.path),
        "chunks": len(kb.chunks),
        "train_pairs": len(train),
        "heldout_pairs": len(heldout),
        "heldout_recall_before": before,
        "heldout_recall_after": after,
        "config": config.model_dump(),
        "seconds": round(seconds, 1),
        "slmkit": __version__,
    }
    _save(adapter, description, Path(output))
    logger.info("query adapter for %s: held-out recall %s -> %s", kb.path, before, after)
    return QueryTuneResult(Path(output), len(train), len(heldout), before, after, seconds)


def _batches(count: int, config: QueryTuneConfig) -> list[list[int]]:
    """The training questions of every step, in order: each epoch a new shuffle, in batches."""
    order, rng, batches = list(range(count)), random.Random(config.seed), []
    for _ in range(config.epochs):
        rng.shuffle(order)
        batches += [order[first : first + config.batch_size] for first in range(0, count, config.batch_size)]
    return batches


def _fingerprint(kb: KnowledgeBase, train: Sequence[QueryPair], config: QueryTuneConfig) -> str:
    """What a checkpoint must have been trained on to be resumed: the same chunks, training pairs
    and training settings (``fusion_sample`` and ``save_every`` do not change the training)."""
    what = {
        "embedder": kb.config.embedder,
        "chunks": [chunk.hash for chunk in kb.chunks],
        "train": [[pair.question, list(pair.positives)] for pair in train],
        "config": config.model_dump(exclude={"fusion_sample", "save_every"}),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()


def _resume(checkpoint_dir: Path | None, fingerprint: str, model: Any, optimizer: Any, scheduler: Any) -> int:
    """The steps a matching checkpoint in ``checkpoint_dir`` holds, its state loaded; else 0."""
    state = checkpoint_state(checkpoint_dir) if checkpoint_dir is not None else None
    if state is None:
        return 0
    if state.get("fingerprint") != fingerprint:
        logger.warning(
            "%s holds the checkpoint of another tuning run (other pairs, settings or chunks): starting "
            "afresh; it is replaced at this run's first checkpoint",
            checkpoint_dir,
        )
        return 0
    load_checkpoint(checkpoint_dir, model, optimizer, scheduler)  # type: ignore[arg-type]
    logger.info("resuming query tuning from step %d (%s)", state["step"], checkpoint_dir)
    return int(state["step"])


def _candidates(
    chunks: int, train: Sequence[QueryPair], held: set[int], config: QueryTuneConfig
) -> np.ndarray:
    """The chunk ids scored in training: all but the held-out ones, or, past ``max_candidates``, the
    positives and a random sample of the rest."""
    ids = np.setdiff1d(np.arange(chunks), np.fromiter(held, dtype=np.int64, count=len(held)))
    if len(ids) <= config.max_candidates:
        return ids
    positives = {c for p in train for c in p.positives}
    sample = np.random.default_rng(config.seed).choice(ids, size=config.max_candidates, replace=False)
    return np.array(sorted(positives.union(int(c) for c in sample)))


def _save(adapter_model: Any, description: dict[str, Any], output: Path) -> None:
    with atomic_folder(output) as staging:
        adapter_model.save_pretrained(str(staging))
        # PEFT records the base as the folder it was loaded from; the embedder's name is portable.
        settings = json.loads((staging / "adapter_config.json").read_text(encoding="utf-8"))
        settings["base_model_name_or_path"] = description["embedder"]
        (staging / "adapter_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        (staging / QUERY_ADAPTER_FILE).write_text(json.dumps(description, indent=2), encoding="utf-8")
