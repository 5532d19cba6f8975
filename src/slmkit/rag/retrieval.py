"""Find the chunks that answer a question: dense, BM25, or both fused (a convex combination of their
normalised scores by default, or reciprocal rank), optionally re-ordered by a cross-encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from slmkit.config import DEFAULT_LEXICAL_WEIGHT, RetrievalConfig
from slmkit.data.prompts import titled_text
from slmkit.rag.documents import Chunk
from slmkit.rag.knowledge_base import KnowledgeBase


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its scores.

    Attributes:
        chunk: The chunk.
        score: The score the hits are ranked by (cosine, BM25 or the fused score, per mode).
        dense_score: Cosine similarity between question and chunk embeddings; always filled in,
            also for BM25 hits, because abstention reads it.
        bm25_score: BM25 score, or None when BM25 did not retrieve this chunk.
        rank: 1-based position in the result list.
    """

    chunk: Chunk
    score: float
    dense_score: float
    bm25_score: float | None
    rank: int


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked id lists: ``score(d) = sum over lists of 1 / (k + rank(d))`` (Cormack et al., 2009).

    Returns ``(id, score)`` pairs, best first; ties keep the order of first appearance.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def convex_fusion(
    dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]], lexical_weight: float
) -> list[tuple[int, float]]:
    """Fuse two scored candidate lists: each list's scores are min-max normalised over its
    candidates (an id missing from a list scores that list's minimum), then
    ``score = (1 - w) * dense + w * lexical``. Bruch et al. (2023, "An Analysis of Fusion Functions
    for Hybrid Retrieval") find this beats reciprocal-rank fusion once ``w`` is tuned: it keeps how
    far apart the scores are, where ranks keep only their order. Measured on SQuAD: recall@1 0.760
    vs 0.714 on the eval articles with ``w`` chosen on the train articles (docs/retrieval.md).

    Returns ``(id, score)`` pairs, best first; ties keep the order of first appearance.
    """

    def normalised(items: Sequence[tuple[int, float]]) -> dict[int, float]:
        if not items:
            return {}
        low, high = min(s for _, s in items), max(s for _, s in items)
        span = high - low
        return {c: (s - low) / span if span > 0 else 1.0 for c, s in items}

    dense_n, lexical_n = normalised(dense), normalised(lexical)
    order = list(dict.fromkeys([c for c, _ in dense] + [c for c, _ in lexical]))
    fused = {
        c: (1 - lexical_weight) * dense_n.get(c, 0.0) + lexical_weight * lexical_n.get(c, 0.0) for c in order
    }
    return sorted(fused.items(), key=lambda kv: -kv[1])


def rerank_order(
    first_stage: Sequence[float], reranker: Sequence[float], weight: float
) -> list[tuple[int, float]]:
    """Positions of the reranked hits, best first, with their final scores: the reranker's own
    scores at ``weight`` 1, else ``convex_fusion`` of both stages (each min-max normalised), which
    keeps what the first stage knew (BM25's exact matches) where the cross-encoder is unsure.
    Ties keep the first stage's order."""
    if weight >= 1.0:
        order = np.argsort(-np.asarray(reranker, dtype=np.float64), kind="stable")
        return [(int(i), float(reranker[i])) for i in order]
    return convex_fusion(
        list(enumerate(map(float, first_stage))), list(enumerate(map(float, reranker))), weight
    )


def rerank_hits(hits: Sequence[Hit], scores: Sequence[float], weight: float) -> list[Hit]:
    """``hits`` in their order at reranker ``weight`` (``rerank_order``), each carrying its final
    score: what ``retrieval.rerank_weight`` does to the hits the reranker scored."""
    order = rerank_order([h.score for h in hits], scores, weight)
    return [replace(hits[i], score=score) for i, score in order]


class Retriever:
    """Searches one knowledge base.

    Example:
        >>> retriever = Retriever(KnowledgeBase.open("kb"))
        >>> hits = retriever.search("Who won Super Bowl 50?")
    """

    def __init__(self, kb: KnowledgeBase, config: RetrievalConfig | None = None) -> None:
        self.kb = kb
        self.config = config or RetrievalConfig()

    def search(self, question: str, top_k: int | None = None, mode: str | None = None) -> list[Hit]:
        """Return up to ``top_k`` hits for ``question``, best first."""
        return self.search_many([question], top_k, mode)[0]

    def search_many(
        self, questions: Sequence[str], top_k: int | None = None, mode: str | None = None
    ) -> list[list[Hit]]:
        """Batch form of :meth:`search`: questions are embedded in one pass."""
        top_k = top_k or self.config.top_k
        mode = mode or self.config.mode
        if not self.kb.chunks:
            return [[] for _ in questions]
        query_vectors, candidates = self._candidates(questions, max(top_k, self.config.candidates), mode)
        # The reranker needs its depth of candidates whatever top_k is.
        depth = max(top_k, self.config.rerank_depth) if self.config.reranker else top_k
        results = [
            self._rank(query, dense, lexical, mode, depth)
            for query, (dense, lexical) in zip(query_vectors, candidates, strict=True)
        ]
        if self.config.reranker:
            results = [self._rerank(q, hits)[:top_k] for q, hits in zip(questions, results, strict=True)]
        return results

    @property
    def lexical_weight(self) -> float:
        """convex fusion's BM25 share: the configuration's, else the knowledge base's (``slmkit index
        tune`` chooses one on its question pairs), else ``DEFAULT_LEXICAL_WEIGHT``."""
        for weight in (self.config.lexical_weight, self.kb.lexical_weight):
            if weight is not None:
                return weight
        return DEFAULT_LEXICAL_WEIGHT

    def convex_orders(
        self, questions: Sequence[str], weights: Sequence[float], depth: int = 20
    ) -> dict[float, list[list[int]]]:
        """For each convex fusion weight, each question's top ``depth`` chunk ids in fused order, the
        questions embedded and searched once for all weights (how ``slmkit index tune`` chooses one)."""
        _, candidates = self._candidates(questions, max(depth, self.config.candidates), "hybrid")
        return {
            weight: [[c for c, _ in convex_fusion(d, lexical, weight)[:depth]] for d, lexical in candidates]
            for weight in weights
        }

    def _candidates(
        self, questions: Sequence[str], pool: int, mode: str
    ) -> tuple[np.ndarray, list[tuple[list[tuple[int, float]], list[tuple[int, float]]]]]:
        """The questions' vectors and, per question, the ``pool`` best (id, score) by the embedder
        and by BM25 (none in ``dense`` mode)."""
        query_vectors = self.kb.embed_queries(questions, self.config.query_encoder)
        dense_scores, dense_ids = self.kb.dense.search(query_vectors, pool)
        candidates = []
        for i, question in enumerate(questions):
            dense = [(int(c), float(s)) for c, s in zip(dense_ids[i], dense_scores[i], strict=True) if c >= 0]
            lexical: list[tuple[int, float]] = []
            if mode != "dense":
                scores, ids = self.kb.lexical.search(question, pool)
                lexical = [(int(c), float(s)) for c, s in zip(ids, scores, strict=True)]
            candidates.append((dense, lexical))
        return query_vectors, candidates

    def _rerank(self, question: str, hits: list[Hit]) -> list[Hit]:
        """The first ``rerank_depth`` hits re-ordered by the cross-encoder's score, or with
        ``rerank_weight`` below 1 by its convex combination with the first stage's score (the same
        fusion as hybrid's); that score becomes their ``score`` (ties keep the first stage's order).
        Hits below keep their order, after them."""
        from slmkit.models.reranker import load_reranker

        assert self.config.reranker is not None
        top, rest = hits[: self.config.rerank_depth], hits[self.config.rerank_depth :]
        scores = load_reranker(self.config.reranker, self.config.reranker_engine).scores(
            question, [titled_text(h.chunk.title, h.chunk.text) for h in top]
        )
        ordered = rerank_hits(top, scores, self.config.rerank_weight)
        return [replace(h, rank=rank) for rank, h in enumerate(ordered + rest, start=1)]

    def _rank(
        self,
        query: np.ndarray,
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        mode: str,
        top_k: int,
    ) -> list[Hit]:
        if mode == "dense":
            ranked = dense[:top_k]
        elif mode == "bm25":
            ranked = lexical[:top_k]
        elif self.config.fusion == "convex":
            ranked = convex_fusion(dense, lexical, self.lexical_weight)[:top_k]
        else:
            ranked = reciprocal_rank_fusion(
                [[c for c, _ in dense], [c for c, _ in lexical]], self.config.rrf_k
            )[:top_k]
        cosines = dict(dense)
        missing = [c for c, _ in ranked if c not in cosines]
        if missing:
            # BM25-only hits still need a cosine similarity: abstention reads it.
            vectors = self.kb.dense.vectors(np.array(missing))
            cosines.update(zip(missing, (vectors @ query).tolist(), strict=True))
        bm25 = dict(lexical)
        return [
            Hit(self.kb.chunks[c], score, float(cosines[c]), bm25.get(c), rank)
            for rank, (c, score) in enumerate(ranked, start=1)
        ]
