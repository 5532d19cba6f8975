"""Typed configs: defaults, validation, and error messages that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.config import AskConfig, IndexConfig, load_yaml, parse_config
from slmkit.errors import ConfigError


def test_defaults_are_the_documented_ones():
    ask = AskConfig()
    assert ask.model == "smollm2-135m-instruct" and ask.retrieval.mode == "hybrid"
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


def test_the_default_model_is_named_once_in_the_registry_and_read_everywhere():
    import slmkit
    from slmkit.config import AskConfig, DistillConfig, EvalConfig, SynthConfig, TrainConfig
    from slmkit.models.registry import DEFAULT_MODEL

    defaults = [
        AskConfig.model_fields["model"].default,
        TrainConfig.model_fields["model"].default,
        DistillConfig.model_fields["teacher"].default,
        EvalConfig.model_fields["model"].default,
        SynthConfig.model_fields["teacher"].default,
    ]
    assert defaults == [DEFAULT_MODEL] * 5
    package = Path(slmkit.__file__).parent
    quoted = f'"{DEFAULT_MODEL}"'
    repeats = [str(p.relative_to(package)) for p in package.rglob("*.py") if quoted in p.read_text("utf-8")]
    assert repeats == ["models/registry.py"]  # the packaged model's own entry
