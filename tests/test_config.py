"""Typed configs: defaults, validation, and error messages that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.config import AskConfig, IndexConfig, TrainConfig, load_yaml, parse_config
from slmkit.errors import ConfigError


def test_defaults_are_the_documented_ones():
    ask = AskConfig()
    assert ask.model == "slmkit-reader-270m" and ask.retrieval.mode == "hybrid" and ask.reading == "auto"
    assert TrainConfig().model == "smollm2-135m-instruct"
    assert IndexConfig().embedder == "all-minilm-l6-v2"


def test_unknown_nested_key_lists_valid_keys_at_that_level():
    with pytest.raises(ConfigError) as err:
        parse_config(AskConfig, {"retrieval": {"topk": 3}}, "recipe.yaml [ask]")
    message = str(err.value)
    assert message.startswith("recipe.yaml [ask]:")
    assert "'retrieval.topk'" in message and "top_k" in message and "rrf_k" in message


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"'retrieval\.mode'"):
        parse_config(AskConfig, {"retrieval": {"mode": "telepathy"}})


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ask: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_the_default_models_are_named_once_in_the_registry_and_read_everywhere():
    import slmkit
    from slmkit.config import AskConfig, DistillConfig, EvalConfig, SynthConfig, TrainConfig
    from slmkit.models.registry import DEFAULT_BASE_MODEL, DEFAULT_MODEL

    answering = [AskConfig.model_fields["model"].default, EvalConfig.model_fields["model"].default]
    assert answering == [DEFAULT_MODEL] * 2
    fine_tuned = [
        TrainConfig.model_fields["model"].default,
        DistillConfig.model_fields["teacher"].default,
        SynthConfig.model_fields["teacher"].default,
    ]
    assert fine_tuned == [DEFAULT_BASE_MODEL] * 3
    package = Path(slmkit.__file__).parent
    for name in (DEFAULT_MODEL, DEFAULT_BASE_MODEL):
        quoted = f'"{name}"'
        sources = package.rglob("*.py")
        repeats = [str(p.relative_to(package)) for p in sources if quoted in p.read_text("utf-8")]
        assert repeats == ["models/registry.py"]  # the packaged model's own entry


@pytest.mark.parametrize("word", ["none", "None", "null", ""])
def test_reranker_none_means_no_reranker(word):
    from slmkit.config import RetrievalConfig

    assert RetrievalConfig(reranker=word).reranker is None
    assert RetrievalConfig(reranker="slmkit-reranker-minilm").reranker == "slmkit-reranker-minilm"
