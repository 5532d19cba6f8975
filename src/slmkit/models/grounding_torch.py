"""Grounded decoding for transformers' ``generate``: :class:`SpanConstraint` as a ``LogitsProcessor``.

Kept apart from slmkit.models.grounding, which needs neither torch nor transformers: the llama.cpp
engine applies the same constraint without importing either (seconds of a fresh ``slmkit ask``).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from slmkit.models.grounding import SpanConstraint


class SpanLogitsProcessor(LogitsProcessor):
    """Masks (to -inf) every token that :class:`SpanConstraint` does not allow, for ``model.generate``.

    Args:
        constraint: The span constraint for this question.
        prompt_length: Tokens of the prompt: ``generate`` passes prompt and answer ids together.

    Raises:
        ValueError: (when called) a batch of more than one sequence.
    """

    def __init__(self, constraint: SpanConstraint, prompt_length: int) -> None:
        self.constraint = constraint
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != 1:
            raise ValueError(f"SpanLogitsProcessor handles one sequence at a time, got {input_ids.shape[0]}")
        allowed = self.constraint.allowed(input_ids[0, self.prompt_length :].tolist())
        index = torch.from_numpy(allowed[allowed < scores.shape[-1]]).to(scores.device)
        masked = torch.full_like(scores, float("-inf"))
        masked[:, index] = scores[:, index]
        return masked
