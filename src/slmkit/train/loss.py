"""Causal-LM loss computed on answer tokens only.

A model's forward pass normally projects *every* position onto the vocabulary (49,152 entries for
SmolLM2) before the loss throws most of them away. On QA data most positions are context, so slmkit
runs the transformer body, keeps the hidden states that predict a labelled token, and projects only
those: same loss, a fraction of the lm-head compute and memory.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from slmkit.train.tokenize import IGNORE


def _causal_lm(model: Any) -> Any:
    """The underlying ``*ForCausalLM`` (unwrapping a PEFT model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over labelled tokens, and how many tokens it averaged over."""
    lm = _causal_lm(model)
    hidden = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    # Position t predicts token t+1.
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    selected = hidden[:, :-1][keep]
    logits = lm.lm_head(selected).float()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    count = int(keep.sum())
    return F.cross_entropy(logits, targets[keep], reduction="mean"), count
