"""The reranker on llama.cpp: the same scores as sentence-transformers without importing torch.

Importing sentence-transformers (torch, transformers) takes seconds on a 2-core CPU, more than a
whole one-off ``slmkit ask`` should; llama.cpp loads the reranker in a fraction of a second, as it
does the query embedder (slmkit.models.query_encoder). Three things make its score equal the
transformers cross-encoder's:

* llama.cpp's BERT runs ``rank`` pooling as ``cls_out(tanh(cls(h[CLS])))``: BERT's pooler and
  classifier, once the converter is given the pooler under the name it maps to ``cls``
  (``classifier.dense``) and the classifier under ``classifier.out_proj``;
* llama.cpp gives every token segment 0, so the reranker is trained with both segment embeddings
  equal and frozen (slmkit.train.reranker), which makes the segment irrelevant;
* the tokens are laid out here as transformers lays out a pair, ``[CLS] question [SEP] chunk
  [SEP]``, with the chunk cut to fit ``max_length`` (truncation ``only_second``).

The transformers folder the converter reads is written once into the cache with safetensors'
numpy API (no torch); so is the GGUF (the converter itself needs torch, once).
"""

from __future__ import annotations

import json
import shutil
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.atomic import atomic_folder
from slmkit.models.cache import cache_dir
from slmkit.models.loading import file_fingerprint

# What the converter maps to llama.cpp's classification head (see the module docstring).
_RENAMED = {
    "bert.pooler.dense.weight": "classifier.dense.weight",
    "bert.pooler.dense.bias": "classifier.dense.bias",
    "classifier.weight": "classifier.out_proj.weight",
    "classifier.bias": "classifier.out_proj.bias",
}
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def converter_folder(reranker: Path, base: Path, weights: str, cache: Path | None = None) -> Path:
    """The transformers folder llama.cpp's converter turns into the reranker's GGUF (written once
    into the cache, keyed by the reranker's weights file)."""
    from safetensors.numpy import load_file, save_file

    stamp = file_fingerprint(reranker / weights)
    target = (cache or cache_dir()) / "rerankers" / f"{reranker.name}-{stamp}"
    if (target / "model.safetensors").is_file():
        return target
    state = {
        k if k.startswith("bert.") else f"bert.{k}": v
        for k, v in load_file(str(base / "model.safetensors")).items()
    }
    state.update({k: v.astype(np.float32) for k, v in load_file(str(reranker / weights)).items()})
    state = {_RENAMED.get(k, k): v for k, v in state.items() if not k.endswith("position_ids")}
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    # One label: the converter keeps a single-label head (it drops only AutoConfig's dummy pair).
    config.update(
        architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}
    )
    with atomic_folder(target) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name in _TOKENIZER_FILES:
            if (base / name).is_file():
                shutil.copy2(base / name, tmp / name)
    return target


class LlamaCppReranker:
    """Scores (question, chunk) pairs with llama.cpp's ``rank`` pooling (see the module docstring).

    Args:
        gguf: The reranker as a GGUF file (f32: the converter's exact copy of the weights).
        max_length: Tokens of a pair, [CLS] and both [SEP] included (the transformers model's limit).
    """

    def __init__(self, gguf: Path, max_length: int) -> None:
        import llama_cpp

        from slmkit.models.llama_cpp import cpu_threads, open_llama, route_llama_logs

        route_llama_logs(llama_cpp)
        threads = cpu_threads()
        self._llama_cpp = llama_cpp
        self.max_length = max_length
        size = max(64, max_length)
        self.llm = open_llama(
            llama_cpp,
            model_path=str(gguf),
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
            n_ctx=size,
            n_batch=size,
            n_ubatch=size,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        # Freed while the interpreter still runs: left to teardown, llama.cpp's context can outlive
        # the library and crash the process on exit (as slmkit.models.llama_cpp does for generators).
        weakref.finalize(self, self.llm.close)
        cls_sep = self.llm.tokenize(b"", add_bos=True, special=False)
        self._cls, self._sep = cls_sep[0], cls_sep[-1]
        # A llama.cpp context is not thread-safe; a server may search from several threads.
        self._lock = threading.Lock()

    def pair_tokens(self, question: str, passage: str) -> list[int]:
        """``[CLS] question [SEP] passage [SEP]``, the passage cut so the pair fits ``max_length``."""
        q = self.llm.tokenize(question.encode("utf-8"), add_bos=False, special=False)
        p = self.llm.tokenize(passage.encode("utf-8"), add_bos=False, special=False)
        q = q[: self.max_length - 4]  # a question longer than the limit keeps one passage token
        p = p[: self.max_length - 3 - len(q)]
        return [self._cls, *q, self._sep, *p, self._sep]

    def scores(self, question: str, passages: Sequence[str]) -> np.ndarray:
        """One score per passage: the cross-encoder's logit."""
        pairs = [self.pair_tokens(question, p) for p in passages]
        with self._lock:
            return np.asarray(self._score(pairs), dtype=np.float32)

    def _score(self, pairs: list[list[int]]) -> list[float]:
        # Llama.embed takes text and tokenises it on its own; a pair needs its own layout, so the
        # batch is filled here the way embed fills it. One pair per decode: attention spans the
        # whole batch (masked per pair), so packing pairs together costs quadratically more.
        llm, lib = self.llm, self._llama_cpp
        out = []
        for tokens in pairs:
            llm._ctx.kv_cache_clear()
            llm._batch.reset()
            llm._batch.add_sequence(tokens, 0, True)
            llm._ctx.decode(llm._batch)
            out.append(float(lib.llama_get_embeddings_seq(llm._ctx.ctx, 0)[0]))
        llm._batch.reset()
        llm._ctx.kv_cache_clear()
        return out


def load_llama_cpp_reranker(folder: Path, info: dict[str, Any], base: Path, weights: str) -> LlamaCppReranker:
    """The reranker in ``folder`` on llama.cpp, converted once into the cache."""
    from slmkit.models.gguf_export import export_folder

    gguf = export_folder(converter_folder(folder, base, weights)).path
    return LlamaCppReranker(gguf, int(info.get("max_length", 256)))
