"""Length-grouped batches with dynamic padding: no compute spent on padding to a fixed length.

Examples are shuffled, cut into pools of ``pool_batches`` batches, and sorted by length inside each
pool, so a batch holds examples of similar length (little padding) while the order of batches stays
random. The order is a pure function of (seed, epoch), which is what makes resuming exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from slmkit.train.tokenize import IGNORE, TokenizedExample


def batch_order(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, pool_batches: int = 50
) -> list[list[int]]:
    """Index batches for one epoch, deterministic in ``(seed, epoch)``."""
    rng = random.Random(f"{seed}:{epoch}")
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(indices), pool):
        chunk = sorted(indices[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(
    examples: Sequence[TokenizedExample], pad_id: int, encoder_decoder: bool = False
) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padded positions get attention 0 and label IGNORE.

    For an encoder-decoder, ``labels`` (the decoder targets) are padded to the longest target on
    their own.
    """
    width = max(len(e) for e in examples)
    label_width = max(len(e.labels) for e in examples) if encoder_decoder else width
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), label_width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
