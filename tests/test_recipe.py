"""Training recipes: each setting declared once, read and written by one pair of functions,
overridden by its own name; the shipped lineage's recipe files; older run folders."""

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nrkdeblur.cli import main
from nrkdeblur.data import RenderSettings
from nrkdeblur.errors import SettingsError
from nrkdeblur.recipe import Recipe, load_recipe, recipe_from_data, save_recipe
from nrkdeblur.settings import differences, flatten, override

ROOT = Path(__file__).resolve().parents[1]


def test_a_recipe_survives_its_file_and_fields_are_set_by_their_own_names(tmp_path):
    recipe = override(Recipe(), lr=5e-5, p_high_iso=0.3, photos=("a", "b"), focus_width=24, lr_drop_steps=(10, 20))
    assert (recipe.optim.lr, recipe.render.p_high_iso, recipe.data.photos) == (5e-5, 0.3, ("a", "b"))
    save_recipe(tmp_path / "run.json", recipe)
    assert load_recipe(tmp_path / "run.json") == recipe
    assert differences(recipe, Recipe()) == ["focus_width", "photos", "lr", "lr_drop_steps", "p_high_iso"]
    with pytest.raises(SettingsError, match="unknown setting lrr"):
        override(Recipe(), lrr=1.0)


def test_a_toml_recipe_reads_by_section_and_refuses_what_it_does_not_know(tmp_path):
    (tmp_path / "r.toml").write_text('seed = 3\n[optim]\nsteps = 7\n[render]\np_mosaic = 0.5\n')
    recipe = load_recipe(tmp_path / "r.toml")
    assert (recipe.seed, recipe.optim.steps, recipe.render.p_mosaic) == (3, 7, 0.5)
    (tmp_path / "bad.toml").write_text('[optim]\nstepz = 7\n')
    with pytest.raises(SettingsError, match=r"optim: unknown setting stepz"):
        load_recipe(tmp_path / "bad.toml")


def test_a_run_folder_from_before_sections_still_reads_with_its_old_names():
    recorded = json.loads((ROOT / "experiments" / "2026-12-03-focus-head" / "run.json").read_text())
    recipe = recipe_from_data(recorded, "run.json")
    assert (recipe.loss.reblur_weight, recipe.loss.fft_weight, recipe.render.p_soft_source) == (0.0, 0.0, 0.15)
    assert (recipe.render.p_highlights, recipe.model.focus_width, recipe.optim.focus_only) == (0.3, 24, True)


def test_the_shipped_lineage_is_its_recipe_files():
    """Each recipe of recipes/ says what its run in experiments/ recorded, and the schedule
    the run's history shows (its learning rate at each validation point)."""
    runs = {"1-from-scratch": "2026-11-24-from-scratch", "2-crop256": "2026-11-24-crop256",
            "3-alpha0": "2026-11-24-alpha0", "4-width24": "2026-11-24-width24",
            "5-width32": "2026-11-25-width32", "6-focus-head": "2026-12-03-focus-head"}
    for name, record in runs.items():
        recipe = load_recipe(ROOT / "recipes" / f"{name}.toml")
        recorded = recipe_from_data(json.loads((ROOT / "experiments" / record / "run.json").read_text()), record)
        same = [k for k in flatten(recipe) if k not in ("init", "steps", "holdout", "lr_drop_steps", "stop_at")]
        assert [k for k in differences(recipe, recorded) if k in same] == [], name
        for point in json.loads((ROOT / "experiments" / record / "history.json").read_text()):
            if "lr" in point and point["step"] <= recipe.end:
                assert recipe.optim.lr_at(point["step"] - 1) == pytest.approx(point["lr"]), (name, point["step"])


def test_every_renderer_setting_is_an_option_of_train():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for field in dataclasses.fields(RenderSettings):
        assert "--" + field.name.replace("_", "-") in result.output, field.name
