"""Turn chat examples into token ids with labels on the answer only.

The prompt is rendered exactly as inference renders it (the model's chat template with the
generation prompt, or the plain layout for base models), so the model learns the text it will see.
Labels cover the assistant's answer *and* the end-of-turn token: SmolLM2's pad token is
``<|im_end|>``, so a collator that masked pad ids would teach the model never to stop.

Encoder-decoders (BART, T5) read the prompt in the plain layout with their encoder and learn the
answer, framed as their tokenizer frames a target (``<s> answer </s>``, ``answer </s>``), as the
decoder's output: ``input_ids`` is then the encoder input and ``labels`` the decoder target.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slmkit.data.prompts import plain_prompt
from slmkit.models.seq2seq import target_ids

logger = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class TokenizedExample:
    """A causal LM's sequence with labels on the answer only (same length), or an encoder-decoder's
    encoder input and decoder target."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_example(
    messages: Sequence[dict[str, str]], tokenizer: Any, max_len: int, encoder_decoder: bool = False
) -> tuple[TokenizedExample, bool]:
    """Token ids and labels for one example whose last message is the assistant's answer.

    Returns the example and whether it had to be truncated. Truncation removes prompt tokens from
    the left, never the answer: a sequence without its answer would teach nothing. With
    ``encoder_decoder``, prompt and answer are encoder input and decoder target (see module doc).
    """
    prompt_ids, answer_ids = (_render_seq2seq if encoder_decoder else _render)(messages, tokenizer)
    truncated = len(prompt_ids) + len(answer_ids) > max_len
    if truncated:
        answer_ids = answer_ids[: max_len // 2] if len(answer_ids) > max_len // 2 else answer_ids
        prompt_ids = prompt_ids[len(prompt_ids) - (max_len - len(answer_ids)) :]
    if encoder_decoder:
        return TokenizedExample(prompt_ids, answer_ids), truncated
    return TokenizedExample(prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids), truncated


def _render(messages: Sequence[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[int]]:
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message of a training example must be the assistant's answer")
    context, answer = list(messages[:-1]), messages[-1]["content"].strip()
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*context, {"role": "assistant", "content": answer}], tokenize=False
        )
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently inside the conversation")
        completion = full[len(prompt) :]
        # Keep the answer up to and including the end-of-turn token; what follows it (a newline)
        # is never generated, because generation stops at that token.
        eos = tokenizer.eos_token
        if eos and eos in completion:
            completion = completion[: completion.index(eos) + len(eos)]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        return prompt_ids, answer_ids
    # Base model: the plain layout; the answer follows "Answer:" and ends with a newline, which
    # is where generation stops for base models (see TransformersGenerator). An empty answer (a
    # reader's NO_ANSWER) is the newline alone, so it is one token, as the end-of-turn is for chat models.
    prompt_ids = tokenizer(plain_prompt(context))["input_ids"]
    answer_ids = tokenizer((" " + answer if answer else "") + "\n", add_special_tokens=False)["input_ids"]
    return prompt_ids, answer_ids


def _render_seq2seq(messages: Sequence[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[int]]:
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message of a training example must be the assistant's answer")
    # The encoder input carries the tokenizer's own framing (T5's </s>, BART's <s> ... </s>).
    prompt_ids = tokenizer(plain_prompt(messages[:-1]))["input_ids"]
    return prompt_ids, target_ids(tokenizer, messages[-1]["content"].strip())


def tokenize_examples(
    examples: Sequence[Any],
    tokenizer: Any,
    max_len: int,
    what: str = "training",
    encoder_decoder: bool = False,
) -> list[TokenizedExample]:
    """Tokenize ``examples`` (anything with ``.messages``); logs how many were truncated."""
    out, truncated = [], 0
    for example in examples:
        tokenized, cut = tokenize_example(example.messages, tokenizer, max_len, encoder_decoder)
        out.append(tokenized)
        truncated += cut
    if truncated:
        logger.warning(
            "%d of %d %s examples exceeded max_seq_len=%d and were left-truncated",
            truncated,
            len(out),
            what,
            max_len,
        )
    return out
