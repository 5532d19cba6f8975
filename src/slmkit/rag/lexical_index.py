"""Keyword (BM25) search with ``bm25s``: English stop words removed, Snowball-stemmed tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )


class BM25Index:
    """BM25 over chunk texts; row ``i`` is chunk id ``i``."""

    def __init__(self, bm25: bm25s.BM25 | None, size: int) -> None:
        self._bm25, self._size = bm25, size

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        if not texts:
            return cls(None, 0)  # bm25s cannot index an empty corpus
        bm25 = bm25s.BM25()
        bm25.index(tokenize(texts), show_progress=False)
        return cls(bm25, len(texts))

    @classmethod
    def load(cls, path: Path, size: int) -> BM25Index:
        return cls(bm25s.BM25.load(str(path), show_progress=False), size)

    def save(self, path: Path) -> None:
        if self._bm25 is None:
            raise ValueError("an empty BM25 index is never saved: a knowledge base holds at least one chunk")
        self._bm25.save(str(path), show_progress=False)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of up to ``k`` chunks sharing at least one term with the query."""
        k = min(k, self._size)
        if k == 0 or self._bm25 is None:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        ids, scores = self._bm25.retrieve(tokenize([query]), k=k, show_progress=False)
        keep = scores[0] > 0  # bm25s pads with zero-score rows; they match no query term
        return scores[0][keep], ids[0][keep].astype(np.int64)
