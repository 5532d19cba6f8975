"""Perplexity of a causal LM on texts, with the sliding-window method of the transformers guide.

A text longer than the window is scored in windows of ``max_length`` tokens that advance by
``stride``; each window scores only the tokens the previous one did not, so every token after
the first is scored exactly once, with up to ``max_length - stride`` tokens of extra context.
The result is token-weighted over all texts: ``exp(total NLL / total scored tokens)``.
See https://huggingface.co/docs/transformers/perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from slmkit.errors import ConfigError, InputError

# Longer windows give each token more context but cost memory that grows with the window
# (attention) and with window x vocabulary (the logits); 1024 is the guide's choice for GPT-2.
MAX_WINDOW = 1024


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity over a set of texts.

    Attributes:
        perplexity: ``exp(mean_nll)``.
        mean_nll: Mean negative log-likelihood in nats per scored token, over all texts.
        tokens: Number of tokens scored (each text's first token has no context and is not).
        per_text: Each text's own perplexity, aligned with the input; None for a text with fewer
            than two tokens (nothing to score).
    """

    perplexity: float
    mean_nll: float
    tokens: int
    per_text: list[float | None]


@dataclass(frozen=True)
class _Window:
    text: int  # index of the text the window belongs to
    ids: list[int]
    first_target: int  # position in ``ids`` of the first token this window scores


def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 4,
) -> PerplexityResult:
    """Token-weighted perplexity of ``model`` on ``texts``.

    Args:
        model: A causal LM (e.g. ``LoadedModel.model``); it is put in eval mode for the call and
            its mode restored after. Log-probabilities are computed in float32 whatever its dtype.
        tokenizer: Its tokenizer; texts are encoded as ``tokenizer(text)`` would (special tokens
            included), so the score matches ``model(ids, labels=ids).loss`` on a short text.
        texts: The texts to score.
        max_length: Window size in tokens (default: the model's context, at most 1024).
        stride: How far each window advances (default ``max_length // 2``).
        batch_size: Windows scored per forward pass; memory grows with batch x window x vocabulary.

    Returns:
        A :class:`PerplexityResult`.

    Raises:
        InputError: ``texts`` is empty, or no text has two or more tokens.
        ConfigError: ``max_length`` < 2, ``stride`` outside 1..max_length, or ``batch_size`` < 1.
    """
    if not texts:
        raise InputError("perplexity needs at least one text; got an empty list")
    context = int(getattr(model.config, "max_position_embeddings", MAX_WINDOW))
    max_length = max_length or min(context, MAX_WINDOW)
    stride = stride or max(max_length // 2, 1)
    _check_options(max_length, stride, batch_size)
    encoded = [tokenizer(text)["input_ids"] for text in texts]
    windows = [w for index, ids in enumerate(encoded) for w in _windows(index, ids, max_length, stride)]
    if not windows:
        raise InputError(f"perplexity needs a text of two or more tokens; none of the {len(texts)} given has")
    nll, counts = [0.0] * len(texts), [0] * len(texts)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        for window, (window_nll, window_count) in zip(batch, _score(model, batch), strict=True):
            nll[window.text] += window_nll
            counts[window.text] += window_count
    tokens = sum(counts)
    mean_nll = sum(nll) / tokens
    per_text = [math.exp(n / c) if c else None for n, c in zip(nll, counts, strict=True)]
    return PerplexityResult(math.exp(mean_nll), mean_nll, tokens, per_text)


def _check_options(max_length: int, stride: int, batch_size: int) -> None:
    if max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
    if not 1 <= stride <= max_length:
        raise ConfigError(f"stride must be between 1 and max_length ({max_length}), got {stride}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")


def _windows(text: int, ids: list[int], max_length: int, stride: int) -> Iterator[_Window]:
    """The guide's windows: ``ids[begin:begin+max_length]`` for begin = 0, stride, 2*stride, ...,
    each scoring the tokens after the previous window's end (position 0 of a text never)."""
    scored_until = 1  # the first token has no context to predict it from
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        # With stride == max_length windows do not overlap, and a window's first token has no
        # context inside it, so it cannot be scored there (the guide drops it the same way).
        first = max(scored_until, begin + 1)
        if end > first:
            yield _Window(text, ids[begin:end], first - begin)
        scored_until = end
        if end == len(ids):
            break


def _pad(windows: list[_Window]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, targets)`` for a batch; targets are -100 where not scored.

    Right padding: a causal model's logits at real positions never see the pads after them.
    """
    longest = max(len(w.ids) for w in windows)
    ids = torch.zeros(len(windows), longest, dtype=torch.long)
    mask = torch.zeros(len(windows), longest, dtype=torch.long)
    targets = torch.full((len(windows), longest), -100, dtype=torch.long)
    for row, window in enumerate(windows):
        end = len(window.ids)
        ids[row, :end] = torch.tensor(window.ids)
        mask[row, :end] = 1
        targets[row, window.first_target : end] = ids[row, window.first_target : end]
    return ids, mask, targets


@torch.no_grad()
def _score(model: PreTrainedModel, windows: list[_Window]) -> list[tuple[float, int]]:
    """Summed NLL (nats) and token count of each window's scored tokens, in one forward pass."""
    was_training = model.training
    model.eval()
    try:
        ids, mask, targets = (t.to(model.device) for t in _pad(windows))
        logits = model(input_ids=ids, attention_mask=mask).logits
        # Logits at position t predict token t + 1. Flattened to (tokens, vocabulary) as the
        # models' own loss does: the (batch, vocabulary, length) layout takes another CPU kernel
        # that differs by ~1e-4 nats per token.
        expected = targets[:, 1:]
        predicted = logits[:, :-1].float().reshape(-1, logits.size(-1))
        losses = torch.nn.functional.cross_entropy(
            predicted, expected.reshape(-1), ignore_index=-100, reduction="none"
        ).view_as(expected)
        counts = (expected != -100).sum(dim=1)
        return [(float(loss), int(count)) for loss, count in zip(losses.sum(dim=1), counts, strict=True)]
    finally:
        model.train(was_training)
