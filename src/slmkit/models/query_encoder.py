"""Question embeddings for search that are quick to start: llama.cpp runs the knowledge base's embedder.

Embedding one question takes milliseconds, but importing sentence-transformers (torch, transformers,
peft) takes 6-10 s on a 2-core CPU: most of a one-off ``slmkit ask``. llama.cpp runs the same
BERT-family embedder from a GGUF that llama.cpp's own converter writes once into the cache; it
imports and loads in about 0.1 s and gives the same vectors (cosine >= 0.99999 to
sentence-transformers on SQuAD questions, tests/models/test_query_encoder.py), at the same
throughput on batches. Chunks are still embedded by sentence-transformers when an index is built:
its tokenizer also measures chunk lengths there.

``retrieval.query_encoder`` picks the engine: ``auto`` is llama.cpp where it is installed and no CUDA
device is in use, sentence-transformers otherwise (and whenever the embedder does not convert).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from slmkit.errors import ConfigError, SlmkitError

logger = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]


class LlamaCppQueryEncoder:
    """Embeds questions with llama.cpp; a question longer than the embedder's input limit goes to
    ``fallback`` (sentence-transformers truncates such input, llama.cpp would not, so only the
    fallback reproduces the indexed vectors for it).

    Args:
        gguf: The embedder as a GGUF file (f32: the converter's exact copy of the weights).
        max_tokens: The embedder's input limit in tokens, [CLS] and [SEP] included.
        fallback: Encodes what llama.cpp should not (loaded only if ever needed).
    """

    def __init__(self, gguf: Path, max_tokens: int, fallback: Encode) -> None:
        import llama_cpp

        from slmkit.models.llama_cpp import cpu_threads, open_llama, route_llama_logs

        route_llama_logs(llama_cpp)
        threads = cpu_threads()
        self.llm = open_llama(
            llama_cpp,
            model_path=str(gguf),
            embedding=True,
            n_ctx=max(max_tokens, 64),
            n_batch=max(max_tokens, 64),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.max_tokens = max_tokens
        self.fallback = fallback
        # A llama.cpp context is not thread-safe; a server may search from several threads.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text."""
        texts = list(texts)
        with self._lock:
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        fits = [len(self.llm.tokenize(t.encode("utf-8"), add_bos=True)) + 1 <= self.max_tokens for t in texts]
        out = np.zeros((len(texts), self.llm.n_embd()), dtype=np.float32)
        short = [i for i, ok in enumerate(fits) if ok]
        if short:
            out[short] = np.asarray(self.llm.embed([texts[i] for i in short], normalize=True))
        long = [i for i, ok in enumerate(fits) if not ok]
        if long:
            out[long] = self.fallback([texts[i] for i in long])
        return out


def load_query_encoder(embedder: str, engine: str, fallback: Encode, device: str = "auto") -> Encode:
    """The function that embeds questions for ``embedder`` on ``engine`` (see the module docstring).

    Raises:
        ConfigError: ``engine: llama.cpp`` without llama-cpp-python, or an unknown engine.
        SlmkitError: ``engine: llama.cpp`` and the embedder does not convert to GGUF.
    """
    if engine == "sentence-transformers":
        return fallback
    if engine not in ("auto", "llama.cpp"):
        raise ConfigError(
            f"unknown query_encoder '{engine}'; choose auto, llama.cpp or sentence-transformers"
        )
    from slmkit.models.backends import cuda_wanted, llama_cpp_available

    if not llama_cpp_available():
        if engine == "llama.cpp":
            raise ConfigError("query_encoder: llama.cpp needs llama-cpp-python: pip install 'slmkit[llama]'")
        return fallback
    if engine == "auto" and cuda_wanted(device):
        return fallback
    try:
        folder = _embedder_folder(embedder)
        from slmkit.models.gguf_export import export_folder

        gguf = export_folder(folder).path
        return LlamaCppQueryEncoder(gguf, _max_tokens(folder), fallback).encode
    except SlmkitError as err:
        if engine == "llama.cpp":
            raise
        logger.warning("questions are embedded with sentence-transformers: %s", err)
        return fallback


def _embedder_folder(embedder: str) -> Path:
    from slmkit.models.embedder import resolve_embedder_path

    folder = Path(resolve_embedder_path(embedder))
    if not folder.is_dir():
        raise SlmkitError(f"embedder '{embedder}' is a hub id, not a local folder llama.cpp can convert")
    return folder


def _max_tokens(folder: Path) -> int:
    """The input limit sentence-transformers truncates at (``max_seq_length``), else the model's."""
    settings = folder / "sentence_bert_config.json"
    if settings.is_file():
        limit = json.loads(settings.read_text(encoding="utf-8")).get("max_seq_length")
        if limit:
            return int(limit)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings", 512))
