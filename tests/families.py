"""Tiny randomly initialised models of every family slmkit supports, built offline in seconds.

Each is built from its transformers config class (two layers, hidden size 64) with a real tokenizer
where one ships offline (SmolLM2's byte-level BPE, with or without its chat template; Gemma-3's) and
otherwise one trained here in well under a second on the text of tests/assets: a SentencePiece model
for Gemma (v1) and T5 (whose GGUF conversion reads the .model file), a byte-level BPE with BART's
special tokens for BART. Shared by the tests through the session fixture ``tiny_model`` (conftest.py).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
SMALL = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 512}


@dataclass(frozen=True)
class TinyFamily:
    """How to build one family's tiny model.

    Attributes:
        name: The family (the id tests are parametrised with).
        tokenizer: ``smollm2`` (with chat template), ``smollm2-base`` (without), ``gemma3``,
            ``spm-bpe`` / ``spm-unigram`` (SentencePiece trained here), ``bpe-bart`` / ``bpe-qwen2``
            (byte-level BPE trained here, with BART's or Qwen2's special tokens).
        config: Builds the transformers config from the tokenizer.
        gguf: Whether llama.cpp's converter converts this tiny model (BART: no family support;
            Qwen2: not with a tokenizer trained here).
    """

    name: str
    tokenizer: str
    config: Callable[[Any], Any]
    gguf: bool = True

    @property
    def encoder_decoder(self) -> bool:
        return self.name in ("bart", "t5")


def _ids(tokenizer: Any) -> dict[str, int | None]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
    }


def _gpt2(tok: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=512, **_ids(tok))


def _phi(tok: Any) -> Any:
    from transformers import PhiConfig

    # llama.cpp's phi-2 converter writes 4 × hidden as the MLP width: keep to that shape.
    return PhiConfig(intermediate_size=256, partial_rotary_factor=0.5, **SMALL, **_ids(tok))


def _decoder(config_class: str, **extra: Any) -> Callable[[Any], Any]:
    def build(tok: Any) -> Any:
        import transformers

        cls = getattr(transformers, config_class)
        return cls(intermediate_size=128, num_key_value_heads=2, **SMALL, **extra, **_ids(tok))

    return build


def _bart(tok: Any) -> Any:
    from transformers import BartConfig

    return BartConfig(
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=512,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=None,
        **_ids(tok),
    )


def _t5(tok: Any) -> Any:
    from transformers import T5Config

    ids = _ids(tok)
    ids.pop("bos_token_id")
    return T5Config(
        d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=tok.pad_token_id, **ids,
    )  # fmt: skip


FAMILIES: dict[str, TinyFamily] = {
    f.name: f
    for f in (
        TinyFamily("gpt2", "smollm2-base", _gpt2),
        TinyFamily("phi", "smollm2-base", _phi),
        # transformers loads any qwen2 model's tokenizer as Qwen2Tokenizer, so this one is trained in
        # Qwen2's format; llama.cpp's converter knows BPE tokenizers by a hash of their output and
        # so converts Qwen2 models with Qwen's own tokenizer only, not this one.
        TinyFamily("qwen2", "bpe-qwen2", _decoder("Qwen2Config", tie_word_embeddings=True), gguf=False),
        TinyFamily("llama", "smollm2", _decoder("LlamaConfig", tie_word_embeddings=True)),
        TinyFamily("mistral", "smollm2", _decoder("MistralConfig", tie_word_embeddings=False)),
        TinyFamily("gemma", "spm-bpe", _decoder("GemmaConfig", head_dim=16)),
        TinyFamily("gemma3", "gemma3", _decoder("Gemma3TextConfig", head_dim=16, sliding_window=64)),
        TinyFamily("bart", "bpe-bart", _bart, gguf=False),
        TinyFamily("t5", "spm-unigram", _t5),
    )
}


def _corpus() -> list[str]:
    """Lines of text to train a tokenizer on: every text asset (about 40 KB)."""
    lines = []
    for path in sorted(ASSETS.rglob("*")):
        if path.suffix in (".json", ".jsonl", ".md", ".txt"):
            lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def _sentencepiece(folder: Path, filename: str, model_type: str, specials: dict[str, int]) -> Path:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=model,
        vocab_size=800,
        model_type=model_type,
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        **specials,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_bytes(model.getvalue())
    return folder


# Qwen2's chat layout (ChatML), without Qwen's default system prompt.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_level_bpe(folder: Path, specials: list[str], tokenizer_config: dict[str, Any]) -> Any:
    """A byte-level BPE (vocab.json + merges.txt, as GPT-2, BART and Qwen2 ship theirs)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=1000, min_frequency=2, special_tokens=specials)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return AutoTokenizer.from_pretrained(str(folder))


def build_tokenizer(kind: str, scratch: Path, model_cache: Path) -> Any:
    """A tokenizer of ``kind`` (see :class:`TinyFamily`), loaded or trained offline."""
    from transformers import GemmaTokenizer, T5Tokenizer

    from slmkit.models.loading import load_tokenizer

    if kind in ("smollm2", "smollm2-base"):
        tokenizer = load_tokenizer("smollm2-135m-instruct", cache=model_cache)
        if kind == "smollm2-base":
            tokenizer.chat_template = None  # a base model: the plain prompt layout
        return tokenizer
    if kind == "gemma3":
        return load_tokenizer("gemma3-270m", cache=model_cache)
    if kind == "spm-bpe":  # Gemma's layout of special tokens
        ids = {"pad_id": 0, "eos_id": 1, "bos_id": 2, "unk_id": 3, "pad_piece": "<pad>"}
        ids.update(bos_piece="<bos>", eos_piece="<eos>")
        folder = _sentencepiece(scratch / kind, "tokenizer.model", "bpe", ids)
        return GemmaTokenizer.from_pretrained(str(folder))
    if kind == "spm-unigram":  # T5's: <pad> 0, </s> 1, <unk> 2, no BOS
        ids = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1, "pad_piece": "<pad>", "eos_piece": "</s>"}
        folder = _sentencepiece(scratch / kind, "spiece.model", "unigram", ids)
        return T5Tokenizer.from_pretrained(str(folder), extra_ids=0)
    if kind == "bpe-bart":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        return _byte_level_bpe(scratch / kind, specials, {"tokenizer_class": "BartTokenizer"})
    if kind == "bpe-qwen2":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        config = {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": specials[0]}
        tokenizer = _byte_level_bpe(scratch / kind, specials, config)
        tokenizer.chat_template = CHATML
        return tokenizer
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def build_tiny_model(family: str, folder: Path, model_cache: Path) -> Path:
    """Write ``family``'s tiny model (random weights, seed 0) and its tokenizer to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from slmkit.models.loading import save_tokenizer

    spec = FAMILIES[family]
    tokenizer = build_tokenizer(spec.tokenizer, folder.parent / f".{family}-tokenizer", model_cache)
    config = spec.config(tokenizer)
    torch.manual_seed(0)
    cls = AutoModelForSeq2SeqLM if spec.encoder_decoder else AutoModelForCausalLM
    model = cls.from_config(config, dtype=torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    shutil.rmtree(folder.parent / f".{family}-tokenizer", ignore_errors=True)
    return folder
