"""Length-grouped batching and collation (no model needed)."""

from __future__ import annotations

import torch

from slmkit.train.batching import batch_order, collate
from slmkit.train.tokenize import IGNORE, TokenizedExample


def test_batch_order_is_deterministic_and_covers_every_example_once():
    lengths = [5, 50, 7, 48, 6, 52, 9, 47, 8, 49]
    first = batch_order(lengths, batch_size=2, seed=3, epoch=0, pool_batches=5)
    assert first == batch_order(lengths, batch_size=2, seed=3, epoch=0, pool_batches=5)
    assert first != batch_order(lengths, batch_size=2, seed=3, epoch=1, pool_batches=5)
    assert sorted(i for b in first for i in b) == list(range(len(lengths)))


def test_batches_group_similar_lengths():
    lengths = [5, 50, 7, 48, 6, 52, 9, 47, 8, 49]
    for batch in batch_order(lengths, batch_size=5, seed=0, epoch=0, pool_batches=2):
        spread = max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        assert spread <= 5  # short and long examples never share a batch here


def test_collate_pads_right_and_masks_padding():
    batch = collate([TokenizedExample([1, 2, 3], [IGNORE, 2, 3]), TokenizedExample([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]
    assert batch["input_ids"].dtype == torch.long
