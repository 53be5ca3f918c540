"""Recipes: the TOML files that say how each shipped model is made, and the runner that follows them."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from nca_edge.checkpoint import read_sidecar, resolve_model
from nca_edge.cli import main
from nca_edge.config import Config
from nca_edge.errors import NCAEdgeError
from nca_edge.recipe import load_recipe, parse_recipe, recipe_names

TINY = """
description = "two tiny stages and a narrowing, for tests"
[[stage]]
name = "a"
[stage.ca]
quant = "ban"
perception = 12
hidden = 8
state_frac_bits = 4
[stage.train]
iterations = 2
batch_size = 4
pool_size = 8
n_fresh = 1
n_mutate = 1
steps = 2
act_noise = 0.1

[[stage]]
name = "thin"
kind = "narrow"
init = "a"
perception = 10
hidden = 8

[[stage]]
name = "b"
init = "thin"
[stage.ca]
quant = "bnn"
perception = 10
hidden = 8
real_weights = ["perceive", "update2"]
state_frac_bits = 4
[stage.train]
iterations = 2
batch_size = 4
pool_size = 8
n_fresh = 1
n_mutate = 1
steps = 2
"""


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", ["float", "bwn", "ban", "bnn"])
def test_each_shipped_model_has_a_recipe_whose_last_stage_made_it(name):
    recipe = load_recipe(name)
    last = recipe.stages[-1]
    meta = read_sidecar(resolve_model(name))
    shipped = Config.from_dict(meta["config"])
    assert last.kind == "train" and last.config.ca == shipped.ca
    # the same training settings, but for where it started (a run path then) and how often it saved
    same = dict(init_from="", iterations=0, checkpoint_every=1)
    assert replace(last.config.train, **same) == replace(shipped.train, **same)
    assert last.config.train.iterations == meta["iterations"]


def test_the_recipes_folder_holds_one_recipe_per_variant():
    assert {"float", "bwn", "ban", "bnn"} <= set(recipe_names())


@pytest.mark.parametrize("text, message", [
    ("[[stage]\n", "not valid TOML"),
    ("colour = 1\n[[stage]]\nname = 'a'\n", "unknown top-level keys"),
    ("description = 'x'\n", "at least one [[stage]]"),
    ("[[stage]]\nname = 'a'\n[stage.ca]\nwidth = 3\n", "unknown CAConfig fields"),
    ("[[stage]]\nname = 'a'\nlr = 3\n", "unknown keys ['lr']"),
    ("[[stage]]\nname = 'a'\n[[stage]]\nname = 'a'\n", "must be unique"),
    ("[[stage]]\nname = 'a'\nkind = 'narrow'\nperception = 3\n", "needs init"),
    ("[[stage]]\nname = 'a'\nkind = 'widen'\ninit = 'bwn'\nfactor = 1\n", "factor >= 2"),
    ("[[stage]]\nname = 'a'\nkind = 'bake'\n", "kind 'bake'"),
    ("[[stage]]\nname = 'a'\n[stage.train]\nact_noise = 0.1\n", "needs binary activations"),
    ("[[stage]]\nname = 'a'\n[stage.train]\ninit_from = 'float'\n", "stage's init"),
    ("[[stage]]\nname = 'a'\n[stage.train]\nbatch_size = 32\npool_size = 16\n", "batch_size must not exceed pool_size"),
    ("[[stage]]\nname = 'a'\n[stage.ca]\nquant = 'ban'\nreal_weights = ['perceive']\n", "real_weights needs"),
])
def test_a_bad_recipe_is_one_error_naming_the_file(text, message):
    with pytest.raises(NCAEdgeError, match="my.toml") as e:
        parse_recipe(text, name="my", where="my.toml")
    assert message in str(e.value)


def test_a_bad_recipe_file_is_one_line_from_the_cli(run, tmp_path):
    (tmp_path / "bad.toml").write_text("[[stage]]\nname = 'a'\n[stage.ca]\nquant = 'tern'\n")
    r = run("train", "--recipe", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "run"))
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "unknown quantization variant" in r.output
    assert not (tmp_path / "run").exists()


def test_a_recipe_runs_stage_by_stage_records_itself_and_continues(run, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "run"
    args = ["train", "--recipe", str(tmp_path / "tiny.toml"), "--out", str(out), "--subset", "40", "--no-progress"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "recipe tiny, stage 1/3 'a' (train): training ban for 2 iterations" in r.output
    assert "stage 2/3 'thin' (narrow)" in r.output and "stage 3/3 'b' (train): training bnn" in r.output
    meta = json.loads((out / "b" / "model.json").read_text())
    assert meta["recipe_toml"] == TINY and meta["recipe_stage"] == "b" and meta["recipe_name"] == "tiny"
    assert meta["config"]["ca"]["perception"] == 10 and meta["config"]["train"]["init_from"] == str(out / "thin" / "model")
    assert json.loads((out / "thin" / "model.json").read_text())["narrowing"]["perception"] == 10
    again = run(*args)  # everything done: nothing trains again
    assert again.exit_code == 0 and "'a' (train): done (2 iterations" in again.output and "'b' (train): done" in again.output
    longer = run(*args, "--iterations", "3")  # a longer total resumes each stage
    assert longer.exit_code == 0 and "resuming in" in longer.output
    assert json.loads((out / "b" / "model.json").read_text())["iterations"] == 3


def test_a_recipe_refuses_a_run_directory_made_with_other_settings(run, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["train", "--recipe", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"), "--subset", "40", "--no-progress"]
    assert run(*args, "--stage", "a").exit_code == 0
    before = (tmp_path / "run" / "a" / "model.safetensors").read_bytes()
    r = run(*args, "--seed", "3")
    assert r.exit_code == 1 and "train.seed = 0, the recipe says 3" in r.output
    assert (tmp_path / "run" / "a" / "model.safetensors").read_bytes() == before


def test_a_stage_that_starts_from_one_not_run_yet_is_refused(run, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    r = run("train", "--recipe", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"), "--stage", "b", "--no-progress")
    assert r.exit_code == 1 and "has not run yet" in r.output


def test_resume_of_a_single_run_keeps_its_length_and_refuses_another_seed(run, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "run"
    assert run("train", "--recipe", str(tmp_path / "tiny.toml"), "--out", str(out), "--stage", "a", "--subset", "40",
               "--no-progress").exit_code == 0
    r = run("train", "--out", str(out / "a"), "--resume", "--subset", "40", "--no-progress")
    assert r.exit_code == 0 and "after 2 iterations" in r.output  # its own length, not 100,000
    r = run("train", "--out", str(out / "a"), "--resume", "--seed", "5", "--no-progress")
    assert r.exit_code == 1 and "has seed 0, not --seed 5" in r.output


def test_train_quant_bnn_runs_the_shipped_bnn_recipe_and_says_which_stage(run, tmp_path):
    r = run("--threads", "1", "train", "--quant", "bnn", "--iterations", "1", "--subset", "64", "--out", str(tmp_path), "--no-progress")
    assert r.exit_code == 0, r.output
    recipe = load_recipe("bnn")
    for i, stage in enumerate(recipe.stages, 1):
        assert f"recipe bnn, stage {i}/{len(recipe.stages)} '{stage.name}'" in r.output
    meta = json.loads((tmp_path / recipe.stages[-1].name / "model.json").read_text())
    assert meta["recipe_toml"] == recipe.text and meta["config"]["ca"] == json.loads(json.dumps(recipe.stages[-1].config.to_dict()["ca"]))


def test_retired_options_are_dropped_when_inactive_and_refused_when_used():
    """Old sidecars list options whose experiments lost (docs/experiments/README.md, 'Retired
    options'): inactive, they are ignored; a checkpoint that used one cannot run here."""
    base = Config().to_dict()
    old = {"ca": {**base["ca"], "separable": 0, "ternary": []}, "train": {**base["train"], "sharpen_ramp": 0, "sharpen_beta": 50.0}}
    assert Config.from_dict(old) == Config()
    with pytest.raises(ValueError, match="separable = 4 is a retired option"):
        Config.from_dict({"ca": {**base["ca"], "separable": 4}})
    with pytest.raises(ValueError, match="act_norm"):
        Config.from_dict({"train": {**base["train"], "act_norm": True}})


def test_a_narrow_stage_made_with_other_settings_is_refused_not_reused(run, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["train", "--out", str(tmp_path / "run"), "--subset", "40", "--no-progress"]
    assert run("train", "--recipe", str(tmp_path / "tiny.toml"), *args[1:]).exit_code == 0
    (tmp_path / "tiny.toml").write_text(TINY.replace("perception = 10\nhidden = 8\n\n[[stage]]\nname = \"b\"",
                                                     "perception = 9\nhidden = 8\n\n[[stage]]\nname = \"b\""))
    r = run("train", "--recipe", str(tmp_path / "tiny.toml"), *args[1:])
    assert r.exit_code == 1 and "made with perception = 10, the recipe says 9" in r.output


def test_resume_with_a_recipe_is_an_error_not_a_fresh_start(run, tmp_path):
    r = run("train", "--quant", "bnn", "--resume", "--out", str(tmp_path))
    assert r.exit_code == 1 and "drop --resume" in r.output and not any(tmp_path.iterdir())
