"""Keyword (BM25) search with ``bm25s``: English stop words removed, Snowball-stemmed tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

_STEMMER = Stemmer.Stemmer("english")
# Each row's tokens, one line per row, space-separated (bm25s tokens are runs of word characters, so
# they hold no whitespace). Kept beside the index so that adding chunks re-tokenizes only the new ones.
TOKENS_FILE = "row_tokens.txt"


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )


class BM25Index:
    """BM25 over chunk texts; row ``i`` is chunk id ``i``.

    BM25 weights every term by statistics of the whole corpus (document frequency, mean length), so
    adding rows means indexing again; what :meth:`extended` saves is tokenizing (stop words,
    stemming) the rows already there, about two thirds of the work.
    """

    def __init__(
        self, bm25: bm25s.BM25 | None, size: int, tokens: list[list[str]] | None, path: Path | None = None
    ) -> None:
        self._bm25, self._size, self._tokens, self._path = bm25, size, tokens, path

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        return cls.from_tokens(tokenize(texts))

    @classmethod
    def from_tokens(cls, tokens: list[list[str]]) -> BM25Index:
        if not tokens:
            return cls(None, 0, [])  # bm25s cannot index an empty corpus
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        return cls(bm25, len(tokens), tokens)

    @classmethod
    def load(cls, path: Path, size: int) -> BM25Index:
        """Open a saved index; its row tokens are read only if :meth:`extended` needs them."""
        return cls(bm25s.BM25.load(str(path), show_progress=False), size, None, path)

    def save(self, path: Path) -> None:
        if self._bm25 is None:
            raise ValueError("an empty BM25 index is never saved: a knowledge base holds at least one chunk")
        self._bm25.save(str(path), show_progress=False)
        if self._tokens is not None:
            lines = "".join(" ".join(row) + "\n" for row in self._tokens)
            (path / TOKENS_FILE).write_text(lines, encoding="utf-8")

    def extended(self, texts: Sequence[str], new_texts: Sequence[str]) -> BM25Index:
        """A new index over this one's rows plus ``new_texts``; this one is left as it was.

        Args:
            texts: This index's row texts, tokenized again only when its saved tokens are missing
                (a knowledge base written before they were kept, or a version since removed).
            new_texts: The rows to append.
        """
        return BM25Index.from_tokens(self._row_tokens(texts) + tokenize(new_texts))

    def _row_tokens(self, texts: Sequence[str]) -> list[list[str]]:
        if self._tokens is None:
            saved = self._path / TOKENS_FILE if self._path else None
            if saved is not None and saved.is_file():
                rows = saved.read_text(encoding="utf-8").split("\n")[:-1]
                if len(rows) == self._size:
                    self._tokens = [row.split() for row in rows]
        return list(self._tokens) if self._tokens is not None else tokenize(texts)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of up to ``k`` chunks sharing at least one term with the query."""
        k = min(k, self._size)
        if k == 0 or self._bm25 is None:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        ids, scores = self._bm25.retrieve(tokenize([query]), k=k, show_progress=False)
        keep = scores[0] > 0  # bm25s pads with zero-score rows; they match no query term
        return scores[0][keep], ids[0][keep].astype(np.int64)
