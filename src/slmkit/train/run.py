"""``slmkit train``: read the task data a recipe names, tokenize it, fine-tune."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from slmkit.config import TrainConfig
from slmkit.data.tasks import Example, read_task, split_examples
from slmkit.models.loading import load_causal_lm
from slmkit.train.finetune import FineTune
from slmkit.train.tokenize import tokenize_examples

logger = logging.getLogger(__name__)

BUNDLED_SQUAD = "bundled:squad"


def _resolve(path: str) -> str:
    if path == BUNDLED_SQUAD:
        from slmkit.data.squad import bundled_squad

        return str(bundled_squad())
    return path


def _read(path: str, config: TrainConfig, split: str | None) -> list[Example]:
    data = config.data
    if data.task == "squad" and data.context in ("retrieved", "passage"):
        return _retrieved_examples(_resolve(path), config, split or "all")
    options: dict[str, Any] = {"split": split} if data.task == "squad" and split else {}
    return read_task(_resolve(path), data.task, **options)


def _retrieved_examples(path: str, config: TrainConfig, split: str) -> list[Example]:
    from slmkit.data.squad import load_squad, split_articles
    from slmkit.train.rag_examples import paragraphs_kb, passage_examples, retrieved_context_examples

    articles = load_squad(path)
    if split != "all":
        articles = split_articles(articles, split)
    data = config.data
    # Built from the training articles only, so eval paragraphs never reach training,
    # not even as distractors.
    kb = paragraphs_kb(articles, Path(data.kb) if data.kb else Path(config.output_dir) / "kb", data.index)
    if data.context == "passage":
        return passage_examples(articles, kb, data.negatives, config.seed, Path(path).name, data.retrieval)
    return retrieved_context_examples(
        articles, kb, data.top_k, data.abstain_share, config.seed, Path(path).name, data.retrieval
    )


def load_examples(config: TrainConfig) -> tuple[list[Example], list[Example]]:
    """Training and validation examples as the recipe describes them."""
    data = config.data
    if data.task == "squad" and data.split == "eval":
        logger.warning("training on the SQuAD *eval* articles: scores on them will no longer be honest")
    examples = _read(data.path, config, data.split)
    if data.val_path:
        train, val = examples, _read(data.val_path, config, None)
    else:
        train, val = split_examples(examples, data.val_fraction, config.seed)
    if data.max_examples:
        train = train[: data.max_examples]
    if data.max_val_examples:
        val = val[: data.max_val_examples]
    return train, val


def finetune(config: TrainConfig) -> dict[str, Any]:
    """Fine-tune as ``config`` says; resumes if ``output_dir`` holds a checkpoint of the same run."""
    loaded = load_causal_lm(config.model)
    train, val = load_examples(config)
    max_len = min(config.data.max_seq_len, loaded.context_window)
    seq2seq = loaded.is_encoder_decoder
    train_tok = tokenize_examples(train, loaded.tokenizer, max_len, "training", seq2seq)
    val_tok = tokenize_examples(val, loaded.tokenizer, max_len, "validation", seq2seq)
    logger.info("%d training and %d validation examples", len(train_tok), len(val_tok))
    return FineTune(config, train_tok, val_tok, loaded).train()
