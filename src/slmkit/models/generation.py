"""Generator backends: one interface for local transformers models, llama.cpp and remote
OpenAI-compatible servers, so answering and serving never depend on which one runs.

torch and transformers are imported where the transformers backend uses them, not at import: a
fresh ``slmkit ask`` on the llama.cpp backend never pays their seconds of start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from slmkit.config import GenerationConfig
from slmkit.data.prompts import plain_prompt

if TYPE_CHECKING:
    import torch

    from slmkit.models.loading import LoadedModel

Messages = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    """One completion with what it cost.

    Attributes:
        text: The generated text, special tokens removed and whitespace stripped.
        prompt_tokens: Tokens the model read.
        completion_tokens: Tokens it generated.
        seconds: Wall time of the whole call.
        first_token_seconds: Time until the first generated token (prompt processing).
        finish_reason: ``stop`` (the model ended its answer) or ``length`` (the token limit cut it)
            when the backend knows; None leaves it to the caller to judge from the token count.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_seconds: float
    finish_reason: str | None = None

    @property
    def tokens_per_second(self) -> float:
        decode = self.seconds - self.first_token_seconds
        return (self.completion_tokens - 1) / decode if self.completion_tokens > 1 and decode > 0 else 0.0


class Generator(Protocol):
    """What answering needs from a model backend."""

    name: str
    context_window: int
    # False for base models: they continue plain text (one line per turn) rather than follow a chat.
    has_chat_template: bool

    def count_tokens(self, messages: Messages) -> int:
        """Tokens the rendered prompt for ``messages`` takes."""
        ...

    def generate(
        self,
        messages: Messages,
        config: GenerationConfig,
        on_text: Callable[[str], None] | None = None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        """Complete ``messages``; stream decoded text pieces to ``on_text`` as they are produced.

        With ``spans``, the answer is kept a verbatim, non-empty substring of one of them (grounded
        decoding) by backends that can constrain decoding; the others ignore it.
        """
        ...


@runtime_checkable
class PassageScorer(Protocol):
    """A generator that can say, before answering, how likely a prompt's answer is empty.

    Per-passage reading (slmkit.rag.reading) needs it: a reader replies with nothing when the passage
    does not answer the question, so the probability of ending the reply at once is the reader's
    "no answer here" probability for that passage. transformers and llama.cpp backends have it;
    a remote server does not report it reliably, so answering falls back to joint reading there.
    """

    def no_answer_probabilities(self, prompts: Sequence[Messages]) -> list[float]:
        """For each prompt, the probability that the first generated token ends the answer."""
        ...


def softmax_mass(logits: Any, ids: Sequence[int]) -> float:
    """The probability mass a logit vector (torch or numpy) puts on ``ids``."""
    values = np.asarray(logits.float().cpu() if hasattr(logits, "float") else logits, dtype=np.float64)
    values = values.reshape(-1)
    weights = np.exp(values - values.max())
    return float(weights[list(ids)].sum() / weights.sum())


class _CallbackStreamer:
    """Decodes tokens incrementally and hands each new piece of text to a callback.

    A transformers streamer (``put`` and ``end``, what ``generate`` calls); runs in the generating
    thread (no queue, no extra thread): the first ``put`` carries the prompt, which is skipped; later
    ones are single new tokens.
    """

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None] | None) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.emitted = 0
        self.prompt_seen = False
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # Hold back a trailing replacement char: it is half of a multi-byte character.
        if self.on_text and not text.endswith("\ufffd") and len(text) > self.emitted:
            self.on_text(text[self.emitted :])
            self.emitted = len(text)

    def end(self) -> None:
        pass


class TransformersGenerator:
    """Generates with a transformers model on the local CPU (or GPU, if the model is there)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.context_window = loaded.context_window

    @property
    def has_chat_template(self) -> bool:
        return self.loaded.has_chat_template

    def _encode(self, messages: Messages) -> dict[str, torch.Tensor]:
        tokenizer = self.loaded.tokenizer
        if self.loaded.has_chat_template:
            return tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        # Base models (e.g. Gemma-3-270M) have no template; their tokenizer adds the BOS they need.
        return tokenizer(plain_prompt(messages), return_tensors="pt")

    def count_tokens(self, messages: Messages) -> int:
        return int(self._encode(messages)["input_ids"].shape[1])

    @cached_property
    def stop_ids(self) -> list[int]:
        """Tokens that end an answer: the end-of-turn/EOS tokens of a chat model; for a base model,
        whose answer is one line, every token that starts with a newline."""
        tokenizer = self.loaded.tokenizer
        if not self.has_chat_template:
            from slmkit.models.grounding import token_bytes

            return [i for i, piece in enumerate(token_bytes(tokenizer)) if piece.startswith(b"\n")]
        eos = getattr(self.loaded.model.generation_config, "eos_token_id", None)
        ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])}
        return sorted(i for i in ids if i is not None)

    def no_answer_probabilities(self, prompts: Sequence[Messages]) -> list[float]:
        import torch

        model = self.loaded.model
        probabilities = []
        with torch.inference_mode():
            for messages in prompts:
                inputs = {k: v.to(model.device) for k, v in self._encode(messages).items()}
                probabilities.append(softmax_mass(self._first_answer_logits(inputs), self.stop_ids))
        return probabilities

    def _first_answer_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Only the last position's logits: a full [tokens, vocab] projection is most of the cost
        # for a 262k-entry vocabulary such as Gemma's.
        return self.loaded.model(**inputs, use_cache=False, logits_to_keep=1).logits[0, -1]

    def _answer_start(self, inputs: dict[str, torch.Tensor]) -> int:
        """Where the answer starts in ``generate``'s output: after the prompt."""
        return int(inputs["input_ids"].shape[1])

    def _decoding(self) -> dict[str, Any]:
        """``generate`` arguments this kind of model needs: a base model has no end-of-turn token,
        so one answer line is one turn."""
        if self.loaded.has_chat_template:
            return {}
        return {"stop_strings": ["\n"], "tokenizer": self.loaded.tokenizer}

    def generate(
        self,
        messages: Messages,
        config: GenerationConfig,
        on_text: Callable[[str], None] | None = None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        import torch

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        inputs = {k: v.to(model.device) for k, v in self._encode(messages).items()}
        answer_start = self._answer_start(inputs)
        streamer = _CallbackStreamer(tokenizer, on_text)
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.temperature > 0,
            "repetition_penalty": config.repetition_penalty,
            "pad_token_id": tokenizer.pad_token_id,
            "streamer": streamer,
            **self._decoding(),
        }
        if config.temperature > 0:
            kwargs.update(temperature=config.temperature, top_p=config.top_p)
        if spans is not None:
            from transformers import LogitsProcessorList

            from slmkit.models.grounding import SpanConstraint, token_bytes
            from slmkit.models.grounding_torch import SpanLogitsProcessor

            constraint = SpanConstraint(token_bytes(tokenizer), spans, self.stop_ids)
            kwargs["logits_processor"] = LogitsProcessorList([SpanLogitsProcessor(constraint, answer_start)])
        start = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs)
        seconds = time.perf_counter() - start
        new_ids = output[0, answer_start:]
        text = tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        first = (streamer.first_token_at or time.perf_counter()) - start
        # Cut by the limit: as many tokens as allowed, the last of them no end of the answer.
        last = int(new_ids[-1]) if new_ids.numel() else None
        ended = last is not None and (last in self.stop_ids or "\n" in tokenizer.decode([last]))
        finish = "length" if new_ids.numel() >= config.max_new_tokens and not ended else "stop"
        prompt_tokens = int(inputs["input_ids"].shape[1])
        return Generation(text, prompt_tokens, int(new_ids.numel()), seconds, first, finish)
