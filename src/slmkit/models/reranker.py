"""Cross-encoder rerankers: a question and a chunk read together, scored for whether the chunk answers it.

A bi-encoder (the embedder) embeds question and chunk apart, which is what makes searching every
chunk cheap, and what makes it miss: it cannot see which words of the question the chunk matches.
A cross-encoder reads both in one transformer pass, so it is too slow for a whole knowledge base
but sharp over the top 20 hits of the first stage (Nogueira & Cho, 2019, "Passage Re-ranking with
BERT"). sentence-transformers' ``CrossEncoder`` runs it.

A reranker folder holds ``reranker.json`` (the embedder it was made from, the length it reads, how
it was trained and measured) and ``model.safetensors`` with every weight that training changed, in
fp16. The word embeddings stay frozen in training and are not stored: they come from the base
embedder, which is how the shipped reranker stays a few MB over a package users already have.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slmkit.atomic import atomic_folder
from slmkit.data.jsonfile import parse_json
from slmkit.errors import ConfigError, InputError, ModelNotFoundError

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

RERANKER_FILE = "reranker.json"
WEIGHTS_FILE = "model.safetensors"
# Frozen in training and loaded from the base embedder (see the module docstring).
FROZEN = ("bert.embeddings.word_embeddings.weight",)
# Frozen with every row equal to the first, so the segment a token is in changes nothing (see
# slmkit.models.reranker_gguf: llama.cpp gives every token segment 0).
TOKEN_TYPES = "bert.embeddings.token_type_embeddings.weight"


def is_reranker(path: Path) -> bool:
    """A folder holding a reranker (see the module docstring)."""
    return path.is_dir() and (path / RERANKER_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_reranker_info(path: Path) -> dict[str, Any]:
    """The folder's ``reranker.json``.

    Raises:
        InputError: missing, not JSON, or without the ``base`` embedder it was made from.
    """
    file = path / RERANKER_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: not a reranker folder (no {RERANKER_FILE})") from None
    info = parse_json(text, file)
    if not isinstance(info, dict) or not isinstance(info.get("base"), str):
        raise InputError(f"{file}: must be a JSON object with a 'base' embedder name")
    return info


@contextlib.contextmanager
def _quiet_load() -> Iterator[None]:
    """Silence the "head newly initialised" report: the trained head is loaded right after."""
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "sentence_transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def new_cross_encoder(base: str, max_length: int) -> CrossEncoder:
    """A cross-encoder with ``base``'s transformer and a fresh one-score head."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from slmkit.models.embedder import resolve_embedder_path

    # Identity: scores are the head's logits, as llama.cpp's rank pooling returns them.
    return CrossEncoder(
        resolve_embedder_path(base),
        num_labels=1,
        max_length=max_length,
        device="cpu",
        activation_fn=torch.nn.Identity(),
    )


def save_reranker(model: CrossEncoder, folder: Path, info: dict[str, Any]) -> None:
    """Write ``model``'s trained weights (fp16, frozen ones left out) and ``info`` (which must name
    the ``base`` embedder) as a reranker folder, atomically."""
    from safetensors.torch import save_file

    state = {
        name: tensor.detach().to("cpu").half().contiguous()
        for name, tensor in model.model.state_dict().items()
        if name not in FROZEN
    }
    with atomic_folder(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / RERANKER_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def resolve_reranker_path(name: str) -> Path:
    """A packaged reranker's folder, or ``name`` as a folder.

    Raises:
        ModelNotFoundError: neither a packaged reranker nor a reranker folder.
    """
    from slmkit.models.cache import cache_dir
    from slmkit.models.registry import PACKAGED_MODELS, packaged_names

    spec = PACKAGED_MODELS.get(name)
    if spec is not None and spec.kind == "reranker":
        return spec.locate(cache_dir())
    path = Path(name).expanduser()
    if is_reranker(path):
        return path
    raise ModelNotFoundError(
        f"unknown reranker '{name}'. Packaged rerankers: {', '.join(packaged_names('reranker'))}; or a "
        f"folder with {RERANKER_FILE} and {WEIGHTS_FILE} (slmkit rerank train writes one)."
    )


@functools.lru_cache(maxsize=4)
def load_reranker(path: str, engine: str = "auto") -> Reranker:
    """The reranker in folder ``path`` (or a packaged reranker's name), loaded once per process.

    ``engine``: ``llama.cpp`` (converted once into the cache; loads without torch), ``transformers``
    (sentence-transformers' ``CrossEncoder``), or ``auto``: llama.cpp where it is installed and no
    CUDA device is in use. Both give the same scores (tests/models/test_reranker.py).

    Raises:
        ModelNotFoundError: no such reranker.
        InputError: the folder's files are broken or do not fit its base embedder.
        ConfigError: an unknown engine, or llama.cpp asked for and not installed.
    """
    from slmkit.models.backends import cuda_wanted, llama_cpp_available

    if engine not in ("auto", "llama.cpp", "transformers"):
        raise ConfigError(f"unknown reranker engine '{engine}'; choose auto, llama.cpp or transformers")
    folder = resolve_reranker_path(path)
    info = read_reranker_info(folder)
    if engine == "llama.cpp" and not llama_cpp_available():
        raise ConfigError("the llama.cpp reranker needs llama-cpp-python: pip install 'slmkit[llama]'")
    if engine == "llama.cpp" or (engine == "auto" and llama_cpp_available() and not cuda_wanted("auto")):
        from slmkit.models.embedder import resolve_embedder_path
        from slmkit.models.reranker_gguf import load_llama_cpp_reranker

        base = Path(resolve_embedder_path(info["base"]))
        return Reranker(load_llama_cpp_reranker(folder, info, base, WEIGHTS_FILE).scores, folder, info)
    return Reranker(_transformers_scores(folder, info), folder, info)


def trained_cross_encoder(folder: Path, info: dict[str, Any]) -> CrossEncoder:
    """The reranker in ``folder`` (``info``: its ``reranker.json``) as a sentence-transformers
    ``CrossEncoder`` on the CPU, in float32: to score with, or to train further.

    Raises:
        InputError: the weights do not fit the base embedder ``info`` names.
    """
    from safetensors.torch import load_file

    with _quiet_load():
        model = new_cross_encoder(info["base"], int(info.get("max_length", 256)))
    state = {name: tensor.float() for name, tensor in load_file(str(folder / WEIGHTS_FILE)).items()}
    missing, unexpected = model.model.load_state_dict(state, strict=False)
    absent = sorted(set(missing) - set(FROZEN))
    if unexpected or absent:
        raise InputError(
            f"{folder / WEIGHTS_FILE}: does not fit {info['base']} (missing {absent[:3]}, "
            f"unexpected {sorted(unexpected)[:3]})"
        )
    return model


def _transformers_scores(folder: Path, info: dict[str, Any]) -> Callable[[str, Sequence[str]], np.ndarray]:
    model = trained_cross_encoder(folder, info)
    model.model.eval()

    def scores(question: str, passages: Sequence[str]) -> np.ndarray:
        pairs = [(question, p) for p in passages]
        return np.asarray(model.predict(pairs, batch_size=32, show_progress_bar=False), dtype=np.float32)

    return scores


class Reranker:
    """Scores (question, chunk) pairs with a cross-encoder; higher is more likely to answer.

    Attributes:
        folder: Where the reranker's files are.
        info: Its ``reranker.json``.
    """

    def __init__(
        self, score: Callable[[str, Sequence[str]], np.ndarray], folder: Path, info: dict[str, Any]
    ) -> None:
        self._score = score
        self.folder = folder
        self.info = info

    def scores(self, question: str, passages: Sequence[str]) -> np.ndarray:
        """One score (a logit) per passage (:func:`slmkit.data.prompts.titled_text` makes a passage)."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self._score(question, list(passages)), dtype=np.float32).reshape(-1)
