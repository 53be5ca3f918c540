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
        (["train", "--recipe", "no-such-recipe"], "no recipe named"),
        (["train", "--quant", "bnn", "--recipe", "ban"], "give one"),
        (["train", "--quant", "bnn", "--stage", "nope"], "no stage 'nope'"),
        (["train", "--resume", "--iterations", "1"], "cannot resume"),
        (["eval", "float", "--data-dir", "/nonexistent"], "not a directory"),
        (["eval", "float", "--dataset", "fashion", "--data-dir", "/tmp"], "missing"),
        (["eval", "float", "--digits", "1", "--steps", "1", "--no-progress", "--out", "/proc/nca-edge"], "/proc/nca-edge"),
        (["eval", "float", "--state-frac-bits", "4", "--save-metrics"], "drop --state-frac-bits"),
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


def test_eval_with_a_post_training_int8_state(run, tmp_path):
    r = run("eval", "float", "--digits", "3", "--steps", "5", "--state-frac-bits", "4", "--out", str(tmp_path), "--no-progress")
    assert r.exit_code == 0 and "int8 state q/2^4" in r.output
