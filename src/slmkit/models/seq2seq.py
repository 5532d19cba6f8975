"""Encoder-decoders (BART, T5) as generators: the prompt is encoded, the answer decoded.

An encoder-decoder has no chat template: the prompt is rendered in the plain layout
(slmkit.data.prompts.plain_prompt) and read by the encoder; the decoder starts from
``decoder_start_token_id`` followed by whatever the tokenizer puts before every target (BART's
``<s>``, nothing for T5) and ends at end-of-sequence. Training (slmkit.train.tokenize) frames its
targets the same way, so the first generated token is the first answer token, and the probability
that it is end-of-sequence is a reader's "no answer in this passage" probability, as it is for a
causal reader's end-of-turn token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import torch
from transformers import LogitsProcessorList

from slmkit.config import GenerationConfig
from slmkit.data.prompts import plain_prompt
from slmkit.models.generation import (
    Generation,
    Messages,
    TransformersGenerator,
    _CallbackStreamer,
    softmax_mass,
)


def target_ids(tokenizer: Any, answer: str) -> list[int]:
    """An answer as a decoder target, framed as the tokenizer frames targets (BART: ``<s> answer
    </s>``; T5: ``answer </s>``); the empty answer is that framing alone."""
    return list(tokenizer(text_target=answer)["input_ids"])


def decoder_prefix(model: Any, tokenizer: Any) -> list[int]:
    """The decoder ids every answer is generated after: the start token, then the target framing's
    leading tokens (everything of an empty target but its end-of-sequence)."""
    start = model.config.decoder_start_token_id
    if start is None:
        start = model.generation_config.decoder_start_token_id
    return [int(start), *target_ids(tokenizer, "")[:-1]]


class Seq2SeqGenerator(TransformersGenerator):
    """Generates with a transformers encoder-decoder (``AutoModelForSeq2SeqLM``).

    The same interface as :class:`TransformersGenerator`, streaming, grounded decoding
    (``spans``) and per-passage no-answer probabilities included; token counts are the encoder's.
    """

    def _encode(self, messages: Messages) -> dict[str, torch.Tensor]:
        return self.loaded.tokenizer(plain_prompt(messages), return_tensors="pt")

    @cached_property
    def prefix(self) -> list[int]:
        return decoder_prefix(self.loaded.model, self.loaded.tokenizer)

    @cached_property
    def stop_ids(self) -> list[int]:
        """End-of-sequence: the only way an encoder-decoder's answer ends."""
        eos = getattr(self.loaded.model.generation_config, "eos_token_id", None)
        ids = {self.loaded.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])}
        return sorted(i for i in ids if i is not None)

    def _decoder_start(self) -> torch.Tensor:
        return torch.tensor([self.prefix], device=self.loaded.model.device)

    def no_answer_probabilities(self, prompts: Sequence[Messages]) -> list[float]:
        model = self.loaded.model
        probabilities = []
        with torch.inference_mode():
            for messages in prompts:
                inputs = {k: v.to(model.device) for k, v in self._encode(messages).items()}
                logits = model(**inputs, decoder_input_ids=self._decoder_start(), use_cache=False).logits
                probabilities.append(softmax_mass(logits[0, -1], self.stop_ids))
        return probabilities

    def generate(
        self,
        messages: Messages,
        config: GenerationConfig,
        on_text: Callable[[str], None] | None = None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        inputs = {k: v.to(model.device) for k, v in self._encode(messages).items()}
        streamer = _CallbackStreamer(tokenizer, on_text)  # its first put is the decoder prefix: skipped
        kwargs: dict[str, Any] = {
            "decoder_input_ids": self._decoder_start(),
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.temperature > 0,
            "repetition_penalty": config.repetition_penalty,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": self.stop_ids,
            "streamer": streamer,
            # Summarisation checkpoints (bart-large-xsum) ship beam search, a minimum length and an
            # n-gram ban in their generation config; slmkit decodes as GenerationConfig says.
            "num_beams": 1,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
        }
        if config.temperature > 0:
            kwargs.update(temperature=config.temperature, top_p=config.top_p)
        if spans is not None:
            from slmkit.models.grounding import SpanConstraint, SpanLogitsProcessor, token_bytes

            constraint = SpanConstraint(token_bytes(tokenizer), spans, self.stop_ids)
            processor = SpanLogitsProcessor(constraint, prompt_length=len(self.prefix))
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        start = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs)
        seconds = time.perf_counter() - start
        new_ids = output[0, len(self.prefix) :]
        text = tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        first = (streamer.first_token_at or time.perf_counter()) - start
        return Generation(text, int(inputs["input_ids"].shape[1]), int(new_ids.numel()), seconds, first)
