"""The command line: help, the eval outputs, and one-line errors with a non-zero exit."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nca_edge.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_help_lists_the_commands(run):
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("train", "eval", "compare"):
        assert cmd in r.output
        assert run(cmd, "--help").exit_code == 0


def test_eval_writes_json_markdown_and_png_with_the_numbers_eval_computes(run, tmp_path):
    from nca_edge.checkpoint import load_checkpoint, resolve_model
    from nca_edge.data import load_digits
    from nca_edge.evaluate import evaluate

    r = run("eval", "float", "--digits", "5", "--steps", "6", "--mutate-at", "3", "--out", str(tmp_path), "--no-progress")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Model |" in (tmp_path / "eval.md").read_text()
    model, _, _ = load_checkpoint(resolve_model("float"))
    d = load_digits()
    direct = evaluate(model, d.test_x[:5], d.test_y[:5], steps=6, mutate_at=3)
    np.testing.assert_allclose(report["accuracy"], direct.accuracy, atol=1e-3)
    assert report["n_digits"] == 5 and report["variant"] == "float"
    assert "Distill article" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "no/such/checkpoint"], "not found"),
        (["train", "--quant", "bwn", "--binary-input", "--iterations", "1"], "--binary-input and --binary-act need"),
        (["train", "--quant", "bwn", "--real-weights", "perceive,conv9", "--iterations", "1"], "layers are perceive"),
        (["train", "--quant", "ban", "--real-weights", "perceive", "--iterations", "1"], "--real-weights needs"),
        (["train", "--lr-boundaries", "10,x", "--iterations", "1"], "--lr-boundaries"),
        (["train", "--quant", "ban", "--binarize-ramp", "10", "--iterations", "1"], "--binarize-ramp needs"),
        (["train", "--init", "no-such-model", "--iterations", "1", "--subset", "10"], "not found"),
        (["eval", "float", "--data-dir", "/nonexistent"], "not a directory"),
        (["eval", "float", "--dataset", "fashion", "--data-dir", "/tmp"], "missing"),
        (["eval", "float", "--digits", "1", "--steps", "1", "--no-progress", "--out", "/proc/nca-edge"], "/proc/nca-edge"),
        (["eval", "float", "--state-frac-bits", "4", "--save-metrics"], "drop --state-frac-bits"),
        (["train", "--batch-size", "32", "--pool-size", "16", "--iterations", "1"], "batch_size must not exceed pool_size"),
        (["train", "--batch-size", "8", "--n-fresh", "6", "--n-mutate", "4", "--iterations", "1"], "n_fresh + n_mutate"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(run, args, message, tmp_path):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "run")]
    r = run(*args)
    assert r.exit_code != 0
    lines = [l for l in r.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in r.output


def test_console_script_prints_no_traceback():
    p = subprocess.run([sys.executable, "-m", "nca_edge.cli", "eval", "missing-model"], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip().startswith("error: model 'missing-model' not found")
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_train_cli_runs_and_resumes(run, tmp_path):
    args = ["train", "--out", str(tmp_path), "--subset", "100", "--batch-size", "8", "--steps", "4", "--no-progress"]
    assert run(*args, "--iterations", "2").exit_code == 0
    r = run(*args, "--iterations", "3", "--resume")
    assert r.exit_code == 0 and "after 3 iterations" in r.output
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["iterations"] == 3 and meta["config"]["train"]["batch_size"] == 8


def test_train_cli_records_real_weights_and_lr_boundaries(run, tmp_path):
    r = run("train", "--out", str(tmp_path), "--subset", "50", "--batch-size", "4", "--steps", "2", "--no-progress",
            "--iterations", "1", "--quant", "bnn", "--real-weights", "perceive,update2", "--lr-boundaries", "500,100")
    assert r.exit_code == 0
    cfg = json.loads((tmp_path / "model.json").read_text())["config"]
    assert cfg["ca"]["real_weights"] == ["perceive", "update2"] and cfg["train"]["lr_boundaries"] == [100, 500]


@pytest.mark.parametrize("extra, pool, fresh, mutate", [
    ([], 160, 2, 2),  # the defaults: a pool of max(160, batch), min(4, batch / 4) fresh and mutated slots
    (["--pool-size", "80", "--n-fresh", "3", "--n-mutate", "1"], 80, 3, 1),
])
def test_train_cli_records_the_pool_recipe(run, tmp_path, extra, pool, fresh, mutate):
    r = run("train", "--out", str(tmp_path), "--subset", "50", "--batch-size", "8", "--steps", "2", "--no-progress",
            "--iterations", "1", *extra)
    assert r.exit_code == 0, r.output
    tc = json.loads((tmp_path / "model.json").read_text())["config"]["train"]
    assert (tc["pool_size"], tc["n_fresh"], tc["n_mutate"]) == (pool, fresh, mutate)


def test_eval_with_a_post_training_int8_state(run, tmp_path):
    r = run("eval", "float", "--digits", "3", "--steps", "5", "--state-frac-bits", "4", "--out", str(tmp_path), "--no-progress")
    assert r.exit_code == 0 and "int8 state q/2^4" in r.output
