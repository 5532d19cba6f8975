"""Model layer: name resolution, offline behaviour, and the GGUF → cache → reload round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from slmkit.errors import ModelNotFoundError
from slmkit.models import loading
from slmkit.models.adapters import MERGED_FROM
from slmkit.models.embedder import resolve_embedder_path
from slmkit.models.loading import (
    is_hub_id,
    load_causal_lm,
    merged_folder,
    prune_superseded_merges,
    resolve_model_path,
    source_gguf_of,
)
from slmkit.models.registry import PACKAGED_MODELS


def test_unknown_model_lists_known_names(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_path("gpt-17-ultra", cache=tmp_path)
    message = str(err.value)
    assert "gpt-17-ultra" in message
    assert "smollm2-135m-instruct" in message and "gemma3-270m" in message


def test_hub_id_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_path("HuggingFaceTB/SmolLM2-360M-Instruct", cache=tmp_path)
    message = str(err.value)
    assert "HuggingFaceTB/SmolLM2-360M-Instruct" in message
    assert "HF_HUB_OFFLINE" in message and "--model DIR" in message


def test_hub_id_passes_through_online(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model_path("org/model", cache=tmp_path) == "org/model"


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model_path(str(tmp_path), cache=tmp_path)


def test_embedder_name_errors(monkeypatch):
    with pytest.raises(ModelNotFoundError, match="all-minilm-l6-v2"):
        resolve_embedder_path("no-such-embedder")
    with pytest.raises(ModelNotFoundError, match=r"not an embedder|generator"):
        resolve_embedder_path("smollm2-135m-instruct")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="offline"):
        resolve_embedder_path("sentence-transformers/all-mpnet-base-v2")


def test_generator_name_for_embedder_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="embedder"):
        resolve_model_path("all-minilm-l6-v2", cache=tmp_path)


def test_hub_id_shape(tmp_path):
    assert is_hub_id("org/name")
    assert not is_hub_id("smollm2-135m-instruct")
    assert not is_hub_id(str(tmp_path))  # an existing path is never a hub id


def test_packaged_files_are_found():
    for spec in PACKAGED_MODELS.values():
        if spec.name != "gemma3-270m":  # gemma assembles a 240 MB file; covered by the slow test
            assert spec.locate(loading.cache_dir()).exists()


@pytest.mark.slow
def test_gguf_cache_round_trip(tmp_path, monkeypatch):
    first = load_causal_lm("smollm2-135m-instruct", cache=tmp_path)
    folder = first.path
    assert folder is not None and folder.parent == tmp_path / "models"
    assert json.loads((folder / "slmkit-model.json").read_text())["source_gguf"].endswith(".gguf")
    # The cached model is a plain model: the GGUF mark that blocks saving and training is gone.
    assert getattr(first.model, "hf_quantizer", None) is None
    assert "quantization_config" not in first.model.config.to_dict()
    assert first.num_parameters == pytest.approx(134.5e6, rel=0.01)
    assert first.has_chat_template and first.tokenizer.eos_token == "<|im_end|>"

    def no_dequantize(*args, **kwargs):
        raise AssertionError("second load must come from the cache, not the GGUF")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", _guard(no_dequantize))
    second = load_causal_lm("smollm2-135m-instruct", cache=tmp_path)
    assert second.path == folder
    ids = first.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(first.model(**ids).logits, second.model(**ids).logits)


def _guard(reject):
    original = AutoModelForCausalLM.from_pretrained

    def from_pretrained(source, *args, **kwargs):
        if "gguf_file" in kwargs:
            reject()
        return original(source, *args, **kwargs)

    return from_pretrained


@pytest.mark.slow
def test_gemma_base_model_gets_bos_and_no_template(model_cache):
    gemma = load_causal_lm("gemma3-270m", cache=model_cache)
    assert not gemma.has_chat_template
    ids = gemma.tokenizer("Question: Who won?")["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id
    assert gemma.num_parameters == pytest.approx(268e6, rel=0.01)


def _merge_record(folder: Path, adapter: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / MERGED_FROM).write_text(json.dumps({"adapter": adapter}))
    return folder


def test_a_new_merge_removes_older_merges_of_the_same_adapter_folder_and_their_exports(tmp_path):
    models, gguf = tmp_path / "models", tmp_path / "gguf"
    gguf.mkdir()
    old = _merge_record(models / "final-merged-aaa", "/runs/a/final")
    other_run = _merge_record(models / "final-merged-bbb", "/runs/b/final")
    unrecorded = models / "final-merged-ccc"  # made before merges recorded their adapter
    unrecorded.mkdir(parents=True)
    current = _merge_record(models / "final-merged-ddd", "/runs/a/final")
    exports = [gguf / "final-merged-aaa-123-f32.gguf", gguf / "final-merged-aaa-123-f32-9.token-bytes.npz"]
    kept = [gguf / "final-merged-bbb-123-f32.gguf", gguf / "final-merged-ddd-456-f32.gguf"]
    for file in exports + kept:
        file.write_bytes(b"x")

    assert prune_superseded_merges(current, "/runs/a/final") == [old]
    assert not old.exists() and not any(f.exists() for f in exports)
    assert other_run.is_dir() and unrecorded.is_dir() and current.is_dir()
    assert all(f.exists() for f in kept)


def test_merged_folder_replaces_the_merge_of_retrained_weights(tmp_path, tiny_model):
    from peft import LoraConfig, get_peft_model

    base = tiny_model("llama")
    adapter = tmp_path / "final"

    def save_adapter(seed: int) -> Path:
        torch.manual_seed(seed)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, init_lora_weights=False)
        )
        model.save_pretrained(adapter)
        return merged_folder(adapter, tmp_path / "cache")

    first = save_adapter(0)
    assert json.loads((first / MERGED_FROM).read_text())["adapter"] == str(adapter.resolve())
    second = save_adapter(1)  # retrained into the same folder: new weights, new fingerprint
    assert second != first and (second / "config.json").is_file()
    assert not first.exists()


def test_source_gguf_of_follows_merges_to_the_packaged_file(tmp_path):
    cache = tmp_path / "cache"
    packaged = tmp_path / "base.gguf"
    packaged.write_bytes(b"GGUF")
    base = cache / "models" / "base-123"
    base.mkdir(parents=True)
    (base / "slmkit-model.json").write_text(json.dumps({"source_gguf": str(packaged)}))
    (base / "config.json").write_text("{}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    merged = _merge_record(cache / "models" / "adapter-merged-456", str(adapter))

    assert source_gguf_of(base, cache) == packaged
    assert source_gguf_of(merged, cache) == packaged  # adapter -> its base -> the packaged file
    assert source_gguf_of(tmp_path / "adapter", cache) is None  # not a model folder of the cache
    packaged.unlink()
    assert source_gguf_of(merged, cache) is None  # the package is gone: nothing to restore from
