"""Keyword (BM25) search with ``bm25s``: English stop words removed, Snowball-stemmed tokens."""

from __future__ import annotations

import json
import shutil
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import Stemmer

if TYPE_CHECKING:
    import bm25s

_STEMMER = Stemmer.Stemmer("english")
# Each row's tokens, kept beside the index so that adding chunks tokenizes only the new ones: the
# token ids of all rows end to end (int32), where each row starts (int64, one more than rows), and
# the vocabulary (token of each id). 4 bytes per token on disk, read through a memory map.
TOKENS_FILE = "token_ids.i32"
TOKEN_OFFSETS_FILE = "token_offsets.npy"
VOCAB_FILE = "vocab.json"
_OLD_TOKENS_FILE = "row_tokens.txt"  # one line of space-separated tokens per row (slmkit <= 0.1)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    import bm25s  # here and below, not at the top: see BM25Index.load

    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )


class _Rows(Sequence[list[int]]):
    """Each row's token ids, read from the memory-mapped id file (what bm25s indexes)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        self.ids, self.offsets = ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row):  # type: ignore[override]
        return self.ids[self.offsets[row] : self.offsets[row + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for row in range(len(self)):
            yield self[row]


class _Corpus:
    """What ``bm25s.BM25.index`` takes as token ids with their vocabulary."""

    def __init__(self, ids: _Rows, vocab: dict[str, int]) -> None:
        self.ids, self.vocab = ids, vocab


class BM25Index:
    """BM25 over chunk texts; row ``i`` is chunk id ``i``.

    BM25 weights every term by statistics of the whole corpus (document frequency, mean length), so
    adding rows means indexing again; what :class:`BM25Writer` saves is tokenizing (stop words,
    stemming) the rows already there, about two thirds of the work, and holding them as Python
    strings: rows are streamed to disk as token ids while a build runs.
    """

    def __init__(self, bm25: bm25s.BM25 | None, size: int, path: Path | None = None) -> None:
        self._bm25, self._size, self._path = bm25, size, path

    @classmethod
    def load(cls, path: Path, size: int) -> BM25Index:
        """Open a saved index; its row tokens are read only if a :class:`BM25Writer` needs them."""
        # Imported here: bm25s imports scipy.sparse, a quarter of a second that a fresh `slmkit ask`
        # spends opening the knowledge base while its model loads beside it (Answerer.load).
        import bm25s

        return cls(bm25s.BM25.load(str(path), show_progress=False), size, path)

    def __len__(self) -> int:
        return self._size

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of up to ``k`` chunks sharing at least one term with the query."""
        k = min(k, self._size)
        if k == 0 or self._bm25 is None:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        ids, scores = self._bm25.retrieve(tokenize([query]), k=k, show_progress=False)
        keep = scores[0] > 0  # bm25s pads with zero-score rows; they match no query term
        return scores[0][keep], ids[0][keep].astype(np.int64)


class BM25Writer:
    """Builds the BM25 index of a new version in ``folder``: the previous version's rows, then rows
    appended batch by batch, indexed at :meth:`close`.

    Args:
        folder: The (empty) index folder of the new version.
        previous: The previous version's index, or None for a build.
        previous_texts: Its rows' texts, iterated only when its saved tokens are missing (a knowledge
            base written before they were kept).
    """

    def __init__(self, folder: Path, previous: BM25Index | None, previous_texts: Sequence[str] = ()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._ids_path = folder / TOKENS_FILE
        self._offsets = array("q", [0])
        self._vocab: dict[str, int] = {}
        if previous is not None and len(previous):
            self._copy_rows(previous, previous_texts)
        self._ids = self._ids_path.open("ab")

    def _copy_rows(self, previous: BM25Index, texts: Sequence[str]) -> None:
        saved = previous._path
        if saved is not None and (saved / TOKENS_FILE).is_file() and (saved / VOCAB_FILE).is_file():
            shutil.copyfile(saved / TOKENS_FILE, self._ids_path)
            self._offsets = array("q", np.load(saved / TOKEN_OFFSETS_FILE).tolist())
            words = json.loads((saved / VOCAB_FILE).read_text(encoding="utf-8"))
            self._vocab = {word: i for i, word in enumerate(words)}
            return
        old_rows = saved / _OLD_TOKENS_FILE if saved is not None else None
        self._ids = self._ids_path.open("ab")
        if old_rows is not None and old_rows.is_file():
            with old_rows.open(encoding="utf-8") as f:
                rows = (line.split() for line in f)
                self._write_rows(rows)
        else:
            batch: list[str] = []
            for text in texts:
                batch.append(text)
                if len(batch) == 1024:
                    self.append(batch)
                    batch = []
            self.append(batch)
        self._ids.close()

    def append(self, texts: Sequence[str]) -> None:
        """Tokenize and store the rows of ``texts`` (appended after the rows written so far)."""
        if texts:
            self._write_rows(tokenize(texts))

    def _write_rows(self, rows) -> None:
        for tokens in rows:
            ids = [self._vocab.setdefault(token, len(self._vocab)) for token in tokens]
            self._ids.write(np.asarray(ids, dtype=np.int32).tobytes())
            self._offsets.append(self._offsets[-1] + len(ids))

    def close(self, progress: bool = False) -> BM25Index:
        """Index every row and save the index and its rows' tokens into the folder (``progress``:
        bm25s's bars, for a large corpus where indexing takes minutes)."""
        self._ids.close()
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        np.save(self.folder / TOKEN_OFFSETS_FILE, offsets)
        words = sorted(self._vocab, key=self._vocab.__getitem__)
        (self.folder / VOCAB_FILE).write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
        size = len(offsets) - 1
        if size == 0:
            return BM25Index(None, 0)  # bm25s cannot index an empty corpus
        ids = np.memmap(self._ids_path, dtype=np.int32, mode="r") if offsets[-1] else np.zeros(0, np.int32)
        import bm25s

        bm25 = bm25s.BM25()
        bm25.index(_Corpus(_Rows(ids, offsets), dict(self._vocab)), show_progress=progress)
        bm25.save(str(self.folder), show_progress=False)
        return BM25Index(bm25, size, self.folder)
