"""Time of ``index add`` for a few new documents against rebuilding the whole knowledge base.

Knowledge base: the SQuAD v1.1 dev paragraphs but the last ``--add`` (all of them by default:
2,057 paragraphs, about 2,500 chunks); then ``--add`` more paragraphs (10) are added. Each paragraph
is one document. Times, with the MiniLM embedder loaded once beforehand:

- ``add_s``: ``KnowledgeBase.open(kb).add(new)``, what ``slmkit index add`` does: open the live
  version, chunk and embed the new documents, copy the vectors, re-index BM25 from the stored tokens,
  write and publish a new version;
- ``add_without_stored_tokens_s``: the same add on a copy of the knowledge base without its stored
  BM25 tokens (as one written before they were kept), so every chunk is tokenized again;
- ``full_rebuild_s`` (the baseline): ``KnowledgeBase.build`` from all the paragraphs.

``ratio`` = full_rebuild_s / add_s (how many times faster an add is than a rebuild).

    python benchmarks/index_add.py                         # ~2,500 chunks + 10 documents (~3 min)
    python benchmarks/index_add.py --paragraphs 60         # a quick check of the script
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import emit, squad_articles
from slmkit.data.squad import SquadArticle, write_squad_paragraphs
from slmkit.models.embedder import load_embedder
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.lexical_index import TOKENS_FILE
from slmkit.rag.storage import current_version


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paragraphs", type=int, default=None, help="paragraphs in all (default: all)")
    parser.add_argument("--add", type=int, default=10, help="paragraphs (documents) to add")
    args = parser.parse_args()
    embedder = load_embedder("all-minilm-l6-v2")
    with tempfile.TemporaryDirectory(prefix="index-add-") as tmp:
        folder = Path(tmp)
        base, new = _write_sources(folder, args.paragraphs, args.add)
        kb, _ = KnowledgeBase.build(folder / "kb", [base], embedder=embedder, progress=False)
        shutil.copytree(folder / "kb", folder / "kb-untokenized")
        (current_version(folder / "kb-untokenized") / "bm25" / TOKENS_FILE).unlink()

        add_s, report = _timed_add(folder / "kb", new, embedder)
        add_untokenized_s, _ = _timed_add(folder / "kb-untokenized", new, embedder)
        start = time.perf_counter()
        full, _ = KnowledgeBase.build(folder / "full", [base, new], embedder=embedder, progress=False)
        full_s = time.perf_counter() - start
    emit(
        {
            "benchmark": "index_add",
            "chunks_before": len(kb.chunks),
            "documents_added": report.documents,
            "chunks_added": report.chunks_added,
            "chunks_after": len(full.chunks),
            "add_s": round(add_s, 3),
            "add_without_stored_tokens_s": round(add_untokenized_s, 3),
            "full_rebuild_s": round(full_s, 2),
            "baseline": "full rebuild (KnowledgeBase.build over all documents)",
            "ratio": round(full_s / add_s, 1),
        }
    )


def _write_sources(folder: Path, paragraphs: int | None, add: int) -> tuple[Path, Path]:
    """SQuAD files of the first paragraphs (the base) and of the last ``add`` ones (to add)."""
    pairs = [(a, p) for a in squad_articles() for p in a.paragraphs][:paragraphs]
    base, new = folder / "base.json", folder / "new.json"
    write_squad_paragraphs(_articles(pairs[:-add]), base)
    write_squad_paragraphs(_articles(pairs[-add:]), new)
    return base, new


def _articles(pairs: list) -> list[SquadArticle]:
    """The paragraphs regrouped under their articles, in order."""
    articles: dict[int, SquadArticle] = {}
    for article, paragraph in pairs:
        held = articles.setdefault(article.index, replace(article, paragraphs=[]))
        held.paragraphs.append(paragraph)
    return list(articles.values())


def _timed_add(path: Path, new: Path, embedder) -> tuple[float, object]:
    start = time.perf_counter()
    _, report = KnowledgeBase.open(path, embedder=embedder).add([new], progress=False)
    return time.perf_counter() - start, report


if __name__ == "__main__":
    main()
