"""Pick and load the generator backend a config asks for: transformers, llama.cpp or a remote server.

Everything that generates (``ask``, ``chat``, ``serve``, ``eval``, ``synth``) loads its model here, so
a new engine is one more branch in :func:`load_generator`, never a change to answering or serving.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

from slmkit.config import BackendConfig
from slmkit.errors import ConfigError, SlmkitError
from slmkit.models.generation import Generator
from slmkit.models.loading import LoadedModel, load_causal_lm
from slmkit.models.registry import gguf_format

logger = logging.getLogger(__name__)


def llama_cpp_available() -> bool:
    """True when llama-cpp-python is installed (the ``llama`` extra)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_backend(config: BackendConfig, model: str | None = None, device: str = "cpu") -> str:
    """The concrete backend ``auto`` stands for: ``openai`` when a server URL is set; ``llama.cpp``
    where it is installed and can run ``model`` on this CPU (a decoder-only model that is packaged,
    local or a GGUF file): the fastest local engine, with the same greedy answers from its export
    (f32, or the format measured to keep a packaged model's answers); ``transformers`` otherwise (a
    CUDA device, encoder-decoders, hub ids; training always)."""
    if config.type != "auto":
        return config.type
    if config.base_url:
        return "openai"
    if llama_cpp_available() and not cuda_wanted(device) and (model is None or _runs_on_llama_cpp(model)):
        return "llama.cpp"
    return "transformers"


def cuda_wanted(device: str) -> bool:
    """Whether ``device`` means a CUDA GPU here (``auto``: one is present)."""
    if device == "cuda":
        return True
    # No NVIDIA driver, no CUDA: decided without importing torch (seconds of a fresh `slmkit ask`).
    if device != "auto" or not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()


def _runs_on_llama_cpp(model: str) -> bool:
    """A packaged generator, a GGUF file, an adapter folder or a decoder-only model folder."""
    from slmkit.models.registry import PACKAGED_MODELS

    if model in PACKAGED_MODELS:
        return PACKAGED_MODELS[model].kind == "causal-lm"
    path = Path(model).expanduser()
    if path.is_file():
        return path.suffix == ".gguf"
    if (path / "adapter_config.json").is_file():
        return True
    return (path / "config.json").is_file() and not _is_encoder_decoder(model)


def _is_encoder_decoder(model: str) -> bool:
    """True for a model folder whose config.json says it is an encoder-decoder (BART, T5)."""
    config = Path(model).expanduser() / "config.json"
    return config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("is_encoder_decoder"))


def load_generator(
    model: str,
    backend: BackendConfig | str = "auto",
    *,
    dtype: str = "float32",
    device: str = "cpu",
    base_url: str | None = None,
    api_key: str | None = None,
) -> Generator:
    """Load ``model`` on the configured backend.

    Args:
        model: Packaged name, folder, ``.gguf`` file or hub id; for ``openai``, the server's model name.
        backend: A :class:`BackendConfig`, or just its ``type``.
        dtype: transformers only: ``float32`` or ``bfloat16``.
        device: transformers only: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
        base_url: Overrides ``backend.base_url``.
        api_key: Overrides the key read from ``backend.api_key_env``.

    Raises:
        ConfigError: ``openai`` without a base URL, ``llama.cpp`` without llama-cpp-python or for an
            encoder-decoder.
        ModelNotFoundError: the model cannot be found.
    """
    config = BackendConfig(type=backend) if isinstance(backend, str) else backend
    if base_url is not None:
        config = config.model_copy(update={"type": "openai", "base_url": base_url})
    kind = resolve_backend(config, model, device)
    if kind == "openai":
        return _openai(model, config, api_key)
    if kind == "llama.cpp":
        from slmkit.models.llama_cpp import LlamaCppGenerator

        _check_decoder_only(model)
        if not llama_cpp_available():
            raise ConfigError(
                "backend 'llama.cpp' needs llama-cpp-python: `pip install 'slmkit[llama]'` (builds from "
                "source in about 4 minutes on 2 cores); or use backend 'transformers'"
            )
        try:
            quant = gguf_format(model, config.gguf_quant)
            return LlamaCppGenerator.load(model, quant=quant, threads=config.threads)
        except SlmkitError as err:
            if config.type != "auto":
                raise
            # auto promised the fastest engine that runs the model, not llama.cpp at any price: a
            # model llama.cpp's converter rejects (an unlisted tokenizer, say) runs on transformers.
            logger.warning("%s runs on transformers: llama.cpp cannot take it (%s)", model, err)
    return transformers_generator(load_causal_lm(model, dtype, device=device))


def transformers_generator(loaded: LoadedModel) -> Generator:
    """The transformers generator for a loaded model: encoder-decoders (BART, T5) get their own."""
    if loaded.is_encoder_decoder:
        from slmkit.models.seq2seq import Seq2SeqGenerator

        return Seq2SeqGenerator(loaded)
    from slmkit.models.generation import TransformersGenerator

    return TransformersGenerator(loaded)


def _check_decoder_only(model: str) -> None:
    """llama.cpp's Python binding generates with decoder-only models: refuse a BART/T5 folder up front
    (packaged models and GGUF files are decoder-only)."""
    if _is_encoder_decoder(model):
        raise ConfigError(
            f"'{model}' is an encoder-decoder, which the llama.cpp backend does not run; "
            "use backend 'transformers'"
        )


def _openai(model: str, config: BackendConfig, api_key: str | None) -> Generator:
    from slmkit.models.remote import OpenAIGenerator

    if not config.base_url:
        raise ConfigError(
            "backend 'openai' needs the server's URL: backend.base_url (or --base-url), "
            "e.g. http://127.0.0.1:8000/v1"
        )
    from slmkit.models.loading import load_tokenizer

    tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
    return OpenAIGenerator(
        config.base_url,
        model,
        api_key=api_key if api_key is not None else os.environ.get(config.api_key_env),
        tokenizer=tokenizer,
        context_window=config.context_window,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
    )
