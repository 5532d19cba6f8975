"""The records that flow through the knowledge base: documents in, chunks out."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A unit of text read from a source, before chunking.

    Attributes:
        text: The document's text.
        source: Where it came from (file path or ``hf://`` address); shown in citations.
        title: Human-readable title (file stem, SQuAD article title, JSON title field, ...).
        position: Index of this document within its source (paragraph, page, record or line number),
            so a citation can point back at the exact place.
        metadata: Extra fields carried through to chunks (e.g. SQuAD paragraph id).
    """

    text: str
    source: str
    title: str
    position: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


def content_hash(text: str) -> str:
    """SHA-256 of whitespace-normalised text; equal hashes mean duplicate content."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document, as stored in the knowledge base.

    ``id`` is the chunk's row in the vector index; ``start``/``end`` are character offsets into the
    document text, so the chunk can always be located in its original.
    """

    id: int
    text: str
    source: str
    title: str
    position: int
    chunk_index: int
    start: int
    end: int
    hash: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        return cls(**data)
