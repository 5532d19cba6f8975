"""slmkit: small language models that answer from your documents, with citations, on a CPU.

The main entry points are imported lazily, so ``import slmkit`` stays fast::

    from slmkit import KnowledgeBase, Answerer
    kb, report = KnowledgeBase.build("kb", ["docs/"])
    print(Answerer.load(kb).ask("Who won Super Bowl 50?").text)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AskConfig": "slmkit.config",
    "IndexConfig": "slmkit.config",
    "KnowledgeBase": "slmkit.rag.knowledge_base",
    "Retriever": "slmkit.rag.retrieval",
    "Answerer": "slmkit.rag.answer",
    "Answer": "slmkit.rag.answer",
    "load_causal_lm": "slmkit.models.loading",
    "load_embedder": "slmkit.models.embedder",
    "TransformersGenerator": "slmkit.models.generation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slmkit' has no attribute {name!r}")
