"""A generator that is any OpenAI-compatible server: vLLM, llama.cpp's server, TGI, or OpenAI itself.

This is how slmkit scales past one CPU: the knowledge base, gates and citations stay here, and the
generation runs on a server (or a load-balanced cluster of them) behind one URL.

Token counts: a remote server does not expose its tokenizer through the OpenAI API, so prompt
fitting counts with a local tokenizer when one is given (``tokenizer=``, e.g. the packaged model the
server runs) and otherwise estimates conservatively (3 characters per token, plus per-message
overhead), which trims context a little earlier than needed but never overflows the window.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slmkit.config import GenerationConfig
from slmkit.errors import BackendUnavailableError, ConfigError, ModelNotFoundError, SlmkitError
from slmkit.models.generation import Generation, Messages

logger = logging.getLogger(__name__)

_CHARS_PER_TOKEN = 3
_MESSAGE_OVERHEAD_TOKENS = 8


class OpenAIGenerator:
    """Generates through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    The server applies its model's chat template, so to slmkit every served model is a chat model.

    Args:
        base_url: The server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model name the server knows (``GET /v1/models`` lists them).
        api_key: Sent as a Bearer token; servers without auth accept any value.
        tokenizer: A local tokenizer (transformers) for exact prompt-token counts, or None to estimate.
        context_window: The served model's window; None asks the server (vLLM's ``max_model_len``,
            llama.cpp's ``n_ctx``) and falls back to 4096.
        timeout_s: Per-request timeout.
        max_retries: Retries (with exponential backoff) on connection errors, timeouts and 5xx
            answers before :class:`BackendUnavailableError` is raised.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        tokenizer: Any = None,
        context_window: int | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self.name = model
        self.has_chat_template = True
        self.tokenizer = tokenizer
        self.max_retries = max_retries
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=max_retries
        )
        self.context_window = context_window or self._served_window() or 4096

    def _served_window(self) -> int | None:
        """The window the server reports for this model, if it reports one (no retries: optional)."""
        import openai

        try:
            listing = self._client.with_options(max_retries=0, timeout=5).models.list().data
        except openai.OpenAIError:
            return None
        for entry in (model.model_dump() for model in listing):
            if entry.get("id") != self.name and len(listing) > 1:
                continue
            meta = entry.get("meta") or {}
            window = entry.get("max_model_len") or meta.get("n_ctx") or meta.get("n_ctx_train")
            if isinstance(window, int) and window > 0:
                return window
        return None

    def count_tokens(self, messages: Messages) -> int:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)
            return len(ids["input_ids"] if isinstance(ids, dict) else ids)
        chars = sum(len(m["content"]) for m in messages)
        return math.ceil(chars / _CHARS_PER_TOKEN) + _MESSAGE_OVERHEAD_TOKENS * (len(messages) + 1)

    def generate(
        self, messages: Messages, config: GenerationConfig, on_text: Callable[[str], None] | None = None
    ) -> Generation:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
        }
        if config.temperature > 0:
            kwargs["top_p"] = config.top_p
        if config.repetition_penalty != 1.0:
            # Not in the OpenAI schema; vLLM reads repetition_penalty, llama.cpp repeat_penalty.
            kwargs["extra_body"] = {
                "repetition_penalty": config.repetition_penalty,
                "repeat_penalty": config.repetition_penalty,
            }
        start = time.perf_counter()
        with _translated_errors(self.base_url, self.name, self.max_retries + 1):
            if on_text is None:
                return self._complete(kwargs, start, messages)
            return self._stream(kwargs, start, messages, on_text)

    def _complete(self, kwargs: dict[str, Any], start: float, messages: Messages) -> Generation:
        response = self._client.chat.completions.create(**kwargs)
        seconds = time.perf_counter() - start
        text = (response.choices[0].message.content or "").strip() if response.choices else ""
        usage = response.usage
        prompt = usage.prompt_tokens if usage else self.count_tokens(messages)
        completion = usage.completion_tokens if usage else max(1, len(text) // _CHARS_PER_TOKEN)
        finish = response.choices[0].finish_reason if response.choices else None
        # A non-streamed reply has no first-token time; the whole call is the honest upper bound.
        return Generation(text, prompt, completion, seconds, seconds, finish)

    def _stream(
        self, kwargs: dict[str, Any], start: float, messages: Messages, on_text: Callable[[str], None]
    ) -> Generation:
        pieces: list[str] = []
        first: float | None = None
        chunks = 0
        usage = finish = None
        for chunk in self._client.chat.completions.create(**kwargs, stream=True):
            usage = getattr(chunk, "usage", None) or usage
            finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if not delta:
                continue
            if first is None:
                first = time.perf_counter() - start
            chunks += 1
            pieces.append(delta)
            on_text(delta)
        seconds = time.perf_counter() - start
        prompt = usage.prompt_tokens if usage else self.count_tokens(messages)
        # Servers send about one token per chunk when they do not report usage.
        completion = usage.completion_tokens if usage else chunks
        text = "".join(pieces).strip()
        return Generation(text, prompt, completion, seconds, first or seconds, finish)


@contextmanager
def _translated_errors(where: str, model: str, tries: int) -> Iterator[None]:
    """Turn the openai client's exceptions into errors that name the server and say what to do."""
    import openai

    try:
        yield
    except (openai.APIConnectionError, openai.InternalServerError) as err:
        raise BackendUnavailableError(
            f"the generator server at {where} did not answer after {tries} tries ({err}); "
            "check that it is running and reachable"
        ) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
        raise ConfigError(
            f"{where} refused the API key ({err.status_code}); set the key the server expects "
            "(backend.api_key_env names the environment variable slmkit reads)"
        ) from None
    except openai.NotFoundError:
        raise ModelNotFoundError(
            f"{where} does not serve a model named '{model}' (GET {where}/models lists them)"
        ) from None
    except openai.APIStatusError as err:
        raise SlmkitError(f"{where} answered {err.status_code}: {err.message}") from None
