"""Every model family slmkit supports, end to end, on tiny random models built offline
(tests/families.py): train (full, LoRA on the family's default targets, LoRA on all-linear),
merge, evaluate with the gold passage, answer over a knowledge base, and export to GGUF where
llama.cpp's converter takes the family. Seconds per family on a 2-core CPU (Gemma-3, whose
262k-token tokenizer takes seconds to read each time a model loads, about a minute).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from families import FAMILIES
from slmkit.config import AbstentionConfig, AskConfig, EvalConfig, GenerationConfig, TrainConfig, parse_config
from slmkit.data.tasks import read_squad_examples
from slmkit.errors import SlmkitError
from slmkit.models.families import family_of
from slmkit.models.loading import load_causal_lm
from slmkit.train.finetune import FineTune
from slmkit.train.merge import merge_adapter
from slmkit.train.tokenize import tokenize_examples

pytestmark = pytest.mark.slow
SQUAD_TINY = Path(__file__).resolve().parent / "assets" / "squad_tiny.json"
QUESTION = "Who won Super Bowl 50?"
# High rates: a randomly initialised two-layer model has everything to learn in a dozen steps.
LR = {"full": 3e-3, "lora": 1e-2}


def _config(model: Path, output: Path, method: str, **overrides) -> TrainConfig:
    data = {
        "model": str(model),
        "method": method,
        "device": "cpu",
        "output_dir": str(output),
        "bf16": False,
        "eval_every": 1000,
        "save_every": 1000,
        "seed": 0,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "optim": {"lr": LR[method], "batch_size": 2, "max_steps": 12, "warmup_ratio": 0.0},
        **overrides,
    }
    return parse_config(TrainConfig, data, "test")


def _fine_tune(config: TrainConfig) -> tuple[FineTune, float, float]:
    """Train on the four tiny SQuAD questions; the answer loss on them before and after."""
    loaded = load_causal_lm(config.model)
    examples = tokenize_examples(
        read_squad_examples(SQUAD_TINY), loaded.tokenizer, 256, encoder_decoder=loaded.is_encoder_decoder
    )
    run = FineTune(config, examples, examples, loaded)
    before = run.evaluate()
    assert run.train()["finished"]
    return run, before, run.evaluate()


def _adapted(run: FineTune) -> set[str]:
    """The (dotted) names of the modules that carry LoRA adapters."""
    return {name for name, module in run.model.named_modules() if hasattr(module, "lora_A")}


def _logits(folder: Path) -> torch.Tensor:
    loaded = load_causal_lm(str(folder))
    ids = loaded.tokenizer("Super Bowl 50 was an American football game.", return_tensors="pt")
    with torch.no_grad():
        if loaded.is_encoder_decoder:
            return loaded.model(**ids, decoder_input_ids=ids["input_ids"][:, :3]).logits
        return loaded.model(**ids).logits


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_merges_evaluates_answers_and_exports(
    family, tiny_model, tiny_kb, tmp_path, model_cache
):
    spec, model = FAMILIES[family], tiny_model(family)

    _, before, after = _fine_tune(_config(model, tmp_path / "full", "full"))
    assert after < before, f"{family}: full fine-tune did not lower the loss ({before:.3f} → {after:.3f})"
    full_final = tmp_path / "full" / "final"

    lora, before, after = _fine_tune(_config(model, tmp_path / "lora", "lora"))
    assert after < before, f"{family}: LoRA did not lower the loss ({before:.3f} → {after:.3f})"
    targets = family_of(lora.loaded.model.config).attention
    adapted = _adapted(lora)
    assert adapted and all(name.endswith(targets) for name in adapted)
    assert lora.config.lora.target_modules == list(targets)  # recipe.yaml records what `auto` meant

    # merge: the standalone folder `slmkit merge` writes computes what training's final/ computes.
    merged = merge_adapter(tmp_path / "lora" / "final" / "adapter", tmp_path / "merged")
    assert torch.allclose(_logits(merged), _logits(tmp_path / "lora" / "final"), atol=1e-5)

    # eval with the gold passage, through the same answering path as `slmkit ask`.
    from slmkit.eval.runner import run_eval

    evaluation = EvalConfig(
        model=str(full_final),
        device="cpu",
        context="gold",
        data={"path": str(SQUAD_TINY), "split": "all"},
        metrics=["squad", "rouge"],
        output_dir=str(tmp_path / "eval"),
        generation=GenerationConfig(max_new_tokens=8),
    )
    result = run_eval(evaluation, progress=False)
    assert len(result.predictions) == 4 and "rougeL" in result.scores
    assert (tmp_path / "eval" / "predictions.jsonl").is_file()

    # ask over a knowledge base: retrieval, generation, gates (relaxed: a tiny model's answer is noise).
    from slmkit.rag.answer import Answerer

    ask = AskConfig(
        model=str(merged),
        device="cpu",
        abstention=AbstentionConfig(min_relevance=0.0, min_coverage=0.0),
        generation=GenerationConfig(max_new_tokens=8),
    )
    answer = Answerer.load(tiny_kb, ask).ask(QUESTION)
    assert answer.hits and answer.prompt_tokens > 0  # the passages reached the model (its answer may be EOS)

    _check_gguf_export(spec, full_final, tmp_path / f"{family}.gguf", model_cache)


def _check_gguf_export(spec, final: Path, output: Path, model_cache: Path) -> None:
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from slmkit.models.gguf_export import export_gguf

    if not spec.gguf:
        with pytest.raises(SlmkitError, match=r"cannot convert|does not recognise the tokenizer"):
            export_gguf(str(final), output, "f32", model_cache)
        return
    result = export_gguf(str(final), output, "f32", model_cache)
    assert result.path.is_file() and result.bytes > 0
    if spec.encoder_decoder:
        return  # T5 converts, but the llama.cpp backend generates with decoder-only models
    import llama_cpp

    from slmkit.models.llama_cpp import open_llama

    # llama.cpp itself, not LlamaCppGenerator: that one reads the window from the GGUF metadata with
    # gguf-py, about a minute for Gemma-3's 262k-token vocabulary on a busy 2-core machine.
    llm = open_llama(llama_cpp, model_path=str(result.path), n_ctx=256, n_threads=1, verbose=False)
    try:
        completion = llm("Question: Who won Super Bowl 50?\nAnswer:", max_tokens=4, temperature=0.0)
        assert completion["usage"]["prompt_tokens"] > 0
    finally:
        llm.close()


# A layer that only all-linear adapts (the MLP's input projection), per family.
MLP = {"gpt2": "mlp.c_fc", "phi": "fc1", "bart": "fc1", "t5": "wi"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_all_linear_adapts_every_linear_layer_but_the_head(family, tiny_model, tmp_path):
    config = _config(tiny_model(family), tmp_path / "run", "lora", lora={"target_modules": "all-linear"})
    config = config.model_copy(update={"optim": config.optim.model_copy(update={"max_steps": 2})})
    run, _, _ = _fine_tune(config)
    adapted = _adapted(run)
    assert not any("lm_head" in name for name in adapted)
    assert any(name.endswith(MLP.get(family, "gate_proj")) for name in adapted)
    assert (tmp_path / "run" / "final" / "adapter" / "adapter_config.json").is_file()
