"""Sliding-window perplexity: checked against the model's own loss and the transformers guide's loop."""

from __future__ import annotations

import math
import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from slmkit.errors import ConfigError, InputError
from slmkit.eval.perplexity import perplexity

TEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. This basin encompasses "
    "seven million square kilometres, of which five and a half million square kilometres are covered "
    "by the rainforest. The region includes territory belonging to nine nations. The majority of the "
    "forest is contained within Brazil, with 60% of the rainforest, followed by Peru with 13%, "
    "Colombia with 10%, and with minor amounts in Bolivia, Ecuador, French Guiana, Guyana and Suriname."
)


class CharTokenizer:
    """One token per character: enough to drive a tiny random model without any files."""

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": [ord(ch) % 128 for ch in text]}


@pytest.fixture(scope="module")
def tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def full_loss_perplexity(model, ids: list[int]) -> float:
    """exp of the model's own mean loss over the whole sequence in one pass."""
    tensor = torch.tensor([ids])
    with torch.no_grad():
        return math.exp(model(tensor, labels=tensor).loss.item())


def guide_perplexity(model, ids: list[int], max_length: int, stride: int) -> float:
    """The loop of https://huggingface.co/docs/transformers/perplexity, one window at a time.

    Token counts are taken after the model's internal shift (labels[1:]); the guide's
    ``valid - batch_size`` is off by one when a window's first label is already masked.
    """
    nll, tokens, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        window = torch.tensor([ids[begin:end]])
        labels = window.clone()
        labels[:, : -(end - previous_end)] = -100
        with torch.no_grad():
            loss = model(window, labels=labels).loss.item()
        count = int((labels[:, 1:] != -100).sum())
        nll, tokens, previous_end = nll + loss * count, tokens + count, end
        if end == len(ids):
            break
    return math.exp(nll / tokens)


# --- fast, with a tiny random model ------------------------------------------------------------


def test_one_window_equals_the_models_own_loss(tiny_model):
    ids = CharTokenizer()("Hello, perplexity!")["input_ids"]
    result = perplexity(tiny_model, CharTokenizer(), ["Hello, perplexity!"])
    assert result.perplexity == pytest.approx(full_loss_perplexity(tiny_model, ids), rel=1e-5)
    assert result.tokens == len(ids) - 1  # the first token has nothing to be predicted from
    assert result.mean_nll == pytest.approx(math.log(result.perplexity))


@pytest.mark.parametrize(("max_length", "stride"), [(16, 8), (16, 5), (16, 16), (2, 1)])
def test_sliding_windows_match_the_guides_loop(tiny_model, max_length, stride):
    text = TEXT[:40]
    ids = CharTokenizer()(text)["input_ids"]
    result = perplexity(tiny_model, CharTokenizer(), [text], max_length=max_length, stride=stride)
    assert result.perplexity == pytest.approx(guide_perplexity(tiny_model, ids, max_length, stride), rel=1e-5)
    # Overlapping windows score every token after the first once; disjoint ones cannot score the
    # first token of each window (no context inside it).
    windows = math.ceil(len(ids) / stride) if stride == max_length else 1
    assert result.tokens == len(ids) - windows


def test_default_window_is_the_models_context(tiny_model):
    text = TEXT[:150]  # longer than the 64 positions the tiny model has
    default = perplexity(tiny_model, CharTokenizer(), [text])
    explicit = perplexity(tiny_model, CharTokenizer(), [text], max_length=64, stride=32)
    assert default == explicit


def test_batching_and_padding_do_not_change_the_result(tiny_model):
    texts = [TEXT[:20], TEXT[:90], "a", TEXT[30:45]]
    one = perplexity(tiny_model, CharTokenizer(), texts, max_length=32, stride=16, batch_size=1)
    many = perplexity(tiny_model, CharTokenizer(), texts, max_length=32, stride=16, batch_size=8)
    assert many.perplexity == pytest.approx(one.perplexity, rel=1e-5)
    assert many.per_text[2] is None  # one character: nothing to score
    assert many.per_text[0] == pytest.approx(one.per_text[0], rel=1e-5)
    # Token-weighted: the total is the mean NLL over all tokens, not the mean of per-text values.
    counts = [19, 89, 0, 14]
    weighted = sum(math.log(p) * c for p, c in zip(many.per_text, counts, strict=True) if p) / sum(counts)
    assert many.mean_nll == pytest.approx(weighted, rel=1e-5)
    assert many.tokens == sum(counts)


def test_training_mode_is_restored(tiny_model):
    tiny_model.train()
    try:
        perplexity(tiny_model, CharTokenizer(), ["some text"])
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_no_text_to_score_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match="at least one text"):
        perplexity(tiny_model, CharTokenizer(), [])
    with pytest.raises(InputError, match="two or more tokens"):
        perplexity(tiny_model, CharTokenizer(), ["", "a"])


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_length": 1}, "max_length"),
        ({"max_length": 8, "stride": 9}, "stride"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_config_errors(tiny_model, options, field):
    with pytest.raises(ConfigError, match=field):
        perplexity(tiny_model, CharTokenizer(), ["some text"], **options)


# --- slow, with the packaged SmolLM2 -----------------------------------------------------------


@pytest.mark.slow
def test_smollm_perplexity_matches_its_loss_and_a_large_sliding_window(smollm):
    model, tokenizer = smollm.model, smollm.tokenizer
    short = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France."
    single = perplexity(model, tokenizer, [short])
    assert single.perplexity == pytest.approx(
        full_loss_perplexity(model, tokenizer(short)["input_ids"]), rel=1e-4
    )

    n_tokens = len(tokenizer(TEXT)["input_ids"])
    whole = perplexity(model, tokenizer, [TEXT])
    # A window nearly the text's length: only its last 4 tokens are scored in a second window
    # (from mid-text), so the value barely moves (+1.1%). Shorter windows move it more than the
    # lost context suggests (+6% at 7/8 of the text): a window that starts mid-sentence costs
    # the model too. The window arithmetic itself is checked against the guide's loop above.
    sliding = perplexity(model, tokenizer, [TEXT], max_length=n_tokens - 4, stride=n_tokens // 2)
    assert math.isfinite(sliding.perplexity)
    assert sliding.tokens == whole.tokens == n_tokens - 1
    assert sliding.perplexity == pytest.approx(whole.perplexity, rel=0.03)


@pytest.mark.slow
def test_smollm_finds_english_far_likelier_than_shuffled_words(smollm):
    words = TEXT.split()
    random.Random(0).shuffle(words)
    natural = perplexity(smollm.model, smollm.tokenizer, [TEXT]).perplexity
    shuffled = perplexity(smollm.model, smollm.tokenizer, [" ".join(words)]).perplexity
    assert natural < 30
    assert shuffled > 10 * natural
