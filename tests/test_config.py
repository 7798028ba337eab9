"""Recipes: loading, overrides, and one-line errors that name the key and the file."""
import pytest

from mvmr.recipe_files import load_recipe
from mvmr.errors import ConfigError


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: mvmr\noptim: {lr: 0.1}\nproviders: {pixels: {weight: 1.0}}\n")
    r = load_recipe(path, ["optim.lr=0.5", "trainer.max_steps=2", "providers.hog.weight=-1", "data.name=npz"])
    assert r.optim.lr == 0.5 and r.trainer.max_steps == 2 and r.providers["hog"].weight == -1 and r.data.name == "npz"


@pytest.mark.parametrize("text,overrides,match", [
    ("optim: {lrr: 0.1}\n", [], r"r\.yaml: unknown key 'optim\.lrr'"),
    ("optim: {lr: fast}\n", [], r"r\.yaml: 'optim\.lr': .*number"),
    ("", ["trainer.seeed=1"], r"unknown key 'trainer\.seeed'"),
    ("", ["optim.lr"], r"--set 'optim.lr': expected section.key=value"),
    ("[1, 2]\n", [], "a recipe is a mapping"),
])
def test_errors_name_key_and_file(tmp_path, text, overrides, match):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_recipe(path, overrides)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_shipped_recipes_validate():
    from pathlib import Path

    recipes = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        load_recipe(path)


def test_yaml_merge_keys_bring_in_an_anchor_and_own_keys_override(tmp_path):
    from mvmr.recipe_files import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("method: mvmr\nproviders:\n  pixels: &term {weight: 0.5, objective: mse}\n"
                    "  lsd:\n    <<: *term\n    weight: 2.0\n")
    recipe = load_recipe(path)
    assert recipe.providers["lsd"].objective == "mse" and recipe.providers["lsd"].weight == 2.0
    assert recipe.providers["pixels"].weight == 0.5


def test_set_with_a_mapping_changes_the_keys_it_names_and_keeps_the_others():
    from mvmr.config import build_recipe

    recipe = build_recipe({"optim": {"batch_size": 64, "epochs": 3, "warmup_epochs": 1}}, ["optim={lr: 0.1}"])
    assert (recipe.optim.lr, recipe.optim.batch_size, recipe.optim.epochs, recipe.optim.warmup_epochs) == (0.1, 64, 3, 1)
    nested = build_recipe({"providers": {"hog": {"weight": 1.0, "params": {"orientations": 12}}}},
                          ["providers.hog={params: {pixels_per_cell: 4}}"])
    assert nested.providers["hog"].params == {"orientations": 12, "pixels_per_cell": 4}


def test_set_with_a_mapping_gives_the_whole_providers_section():
    from mvmr.config import build_recipe

    recipe = build_recipe({"providers": {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0}}}, ["providers={hog: {weight: 0.5}}"])
    assert list(recipe.providers) == ["hog"] and recipe.providers["hog"].weight == 0.5
