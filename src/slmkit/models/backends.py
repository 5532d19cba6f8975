"""Pick and load the generator backend a config asks for: transformers, llama.cpp or a remote server.

Everything that generates (``ask``, ``chat``, ``serve``, ``eval``, ``synth``) loads its model here, so
a new engine is one more branch in :func:`load_generator`, never a change to answering or serving.
"""

from __future__ import annotations

import importlib.util
import os

from slmkit.config import BackendConfig
from slmkit.errors import ConfigError
from slmkit.models.generation import Generator


def llama_cpp_available() -> bool:
    """True when llama-cpp-python is installed (the ``llama`` extra)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_backend(config: BackendConfig) -> str:
    """The concrete backend ``auto`` stands for (see :class:`BackendConfig`)."""
    if config.type != "auto":
        return config.type
    if config.base_url:
        return "openai"
    return "transformers"


def load_generator(
    model: str,
    backend: BackendConfig | str = "auto",
    *,
    dtype: str = "float32",
    base_url: str | None = None,
    api_key: str | None = None,
) -> Generator:
    """Load ``model`` on the configured backend.

    Args:
        model: Packaged name, folder, ``.gguf`` file or hub id; for ``openai``, the server's model name.
        backend: A :class:`BackendConfig`, or just its ``type``.
        dtype: transformers only: ``float32`` or ``bfloat16``.
        base_url: Overrides ``backend.base_url``.
        api_key: Overrides the key read from ``backend.api_key_env``.

    Raises:
        ConfigError: ``openai`` without a base URL, or ``llama.cpp`` without llama-cpp-python.
        ModelNotFoundError: the model cannot be found.
    """
    config = BackendConfig(type=backend) if isinstance(backend, str) else backend
    if base_url is not None:
        config = config.model_copy(update={"type": "openai", "base_url": base_url})
    kind = resolve_backend(config)
    if kind == "openai":
        return _openai(model, config, api_key)
    if kind == "llama.cpp":
        from slmkit.models.llama_cpp import LlamaCppGenerator

        if not llama_cpp_available():
            raise ConfigError(
                "backend 'llama.cpp' needs llama-cpp-python: `pip install 'slmkit[llama]'` (builds from "
                "source in about 4 minutes on 2 cores); or use backend 'transformers'"
            )
        return LlamaCppGenerator.load(model, quant=config.gguf_quant, threads=config.threads)
    from slmkit.models.generation import TransformersGenerator
    from slmkit.models.loading import load_causal_lm

    return TransformersGenerator(load_causal_lm(model, dtype))


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
