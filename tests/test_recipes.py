"""Every shipped recipe validates against the config schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.config import AskConfig, IndexConfig, load_yaml, parse_config

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
SECTIONS = {"index": IndexConfig, "ask": AskConfig}


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_starts_with_its_command(recipe):
    text = recipe.read_text(encoding="utf-8")
    assert "slmkit " in text.split("\n\n")[0], "a recipe begins with the command that runs it"
    data = load_yaml(recipe)
    assert set(data) <= set(SECTIONS), f"unknown sections: {set(data) - set(SECTIONS)}"
    for section, model in SECTIONS.items():
        if section in data:
            parse_config(model, data[section], f"{recipe.name} [{section}]")
