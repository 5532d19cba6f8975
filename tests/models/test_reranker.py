"""Reranker folders: how a name resolves, and the errors a broken folder gives."""

from __future__ import annotations

import numpy as np
import pytest

from slmkit.data.prompts import titled_text
from slmkit.errors import InputError, ModelNotFoundError
from slmkit.models.reranker import (
    RERANKER_FILE,
    WEIGHTS_FILE,
    read_reranker_info,
    resolve_reranker_path,
)


def test_the_title_goes_on_the_line_before_the_text():
    assert titled_text("Warsaw", "It is the capital.") == "Warsaw\nIt is the capital."
    assert titled_text("", "It is the capital.") == "It is the capital."


def test_an_unknown_name_lists_the_packaged_rerankers(tmp_path):
    with pytest.raises(ModelNotFoundError, match="slmkit-reranker-minilm"):
        resolve_reranker_path(str(tmp_path / "nowhere"))


def test_a_generator_is_not_a_reranker():
    with pytest.raises(ModelNotFoundError, match="unknown reranker 'gemma3-270m'"):
        resolve_reranker_path("gemma3-270m")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('["a"]', "'base' embedder"), ('{"base": 3}', "'base' embedder")],
)
def test_a_broken_reranker_json_names_the_file(tmp_path, content, message):
    (tmp_path / RERANKER_FILE).write_text(content, encoding="utf-8")
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(InputError, match=message) as err:
        read_reranker_info(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_the_packaged_reranker_resolves_offline():
    folder = resolve_reranker_path("slmkit-reranker-minilm")
    assert read_reranker_info(folder)["base"] == "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def untrained_reranker(tmp_path_factory):
    """A reranker folder with a random head, made the way training makes one (segments tied)."""
    import torch

    from slmkit.models.reranker import TOKEN_TYPES, new_cross_encoder, save_reranker

    model = new_cross_encoder("all-minilm-l6-v2", 256)
    with torch.no_grad():
        types = model.model.get_parameter(TOKEN_TYPES)
        types[1:] = types[0]
        torch.manual_seed(0)
        model.model.classifier.weight.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("reranker") / "r"
    save_reranker(model, folder, {"base": "all-minilm-l6-v2", "max_length": 256})
    return folder


def test_llama_cpp_scores_as_transformers_does(untrained_reranker, tiny_kb):
    pytest.importorskip("llama_cpp")
    from slmkit.models.reranker import load_reranker

    passages = [titled_text(c.title, c.text) for c in tiny_kb.chunks]
    passages.append("Warsaw\n" + " ".join(["Very long, accented text: Skłodowska-Curie née Curie."] * 40))
    questions = ["Who won Super Bowl 50?", "What is the capital of Poland?", "Qu'est-ce que c'est ?"]
    torch_scores = load_reranker(str(untrained_reranker), "transformers")
    llama_scores = load_reranker(str(untrained_reranker), "llama.cpp")
    for question in questions:
        expected = torch_scores.scores(question, passages)
        got = llama_scores.scores(question, passages)
        assert got.shape == expected.shape == (len(passages),)
        # Both compute in f32; the long accented passage, cut to 256 tokens, differs by ~0.002.
        np.testing.assert_allclose(got, expected, atol=5e-3)


def test_an_unknown_engine_is_refused(untrained_reranker):
    from slmkit.errors import ConfigError
    from slmkit.models.reranker import load_reranker

    with pytest.raises(ConfigError, match="unknown reranker engine 'onnx'"):
        load_reranker(str(untrained_reranker), "onnx")


def test_the_shipped_card_is_rendered_from_the_files_beside_it():
    from slmkit.models.model_card import render_reranker_card

    folder = resolve_reranker_path("slmkit-reranker-minilm")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card == render_reranker_card(folder, "slmkit-reranker-minilm")
    assert "Not measured yet" not in card


def test_a_further_epochs_card_describes_both_stages(tmp_path):
    import json
    import shutil

    from slmkit.models.model_card import RERANKER_RECIPES, STARTED_FROM_FILE, render_reranker_card

    folder = tmp_path / "further"
    shutil.copytree(resolve_reranker_path("slmkit-reranker-minilm"), folder)
    first = json.loads((folder / "reranker.json").read_text(encoding="utf-8"))
    (folder / STARTED_FROM_FILE).write_text(json.dumps(first), encoding="utf-8")
    further = first | {"config": first["config"] | {"init": "runs/first/final", "seed": 1}, "steps": 7}
    (folder / "reranker.json").write_text(json.dumps(further), encoding="utf-8")
    card = render_reranker_card(folder, "slmkit-reranker-minilm")
    assert (
        f"started from `runs/first/final`, the reranker of `{RERANKER_RECIPES[0]}` ({first['steps']} steps"
        in card
    )
    assert f"`slmkit rerank train {RERANKER_RECIPES[1]}`" in card and "- 7 steps" in card


def test_the_shipped_reranker_is_small():
    folder = resolve_reranker_path("slmkit-reranker-minilm")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25 * 2**20
