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

from functools import cached_property
from typing import Any

import torch

from slmkit.data.prompts import plain_prompt
from slmkit.models.generation import Messages, TransformersGenerator


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
    (``spans``) and per-passage no-answer probabilities included (its decoding loop, with the
    decoder's start and stop); token counts are the encoder's.
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

    def _first_answer_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.loaded.model(**inputs, decoder_input_ids=self._decoder_start(), use_cache=False)
        return output.logits[0, -1]

    def _answer_start(self, inputs: dict[str, torch.Tensor]) -> int:
        return len(self.prefix)  # generate returns the decoder's ids: the prefix, then the answer

    def _decoding(self) -> dict[str, Any]:
        return {
            "decoder_input_ids": self._decoder_start(),
            "eos_token_id": self.stop_ids,
            # Summarisation checkpoints (bart-large-xsum) ship beam search, a minimum length and an
            # n-gram ban in their generation config; slmkit decodes as GenerationConfig says.
            "num_beams": 1,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
        }
