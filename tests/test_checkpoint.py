"""Checkpoints: safetensors + JSON round trip, and one clear error for every kind of damage."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from nca_edge.checkpoint import checkpoint_paths, load_checkpoint, resolve_model, save_checkpoint
from nca_edge.config import CAConfig, Config
from nca_edge.errors import NCAEdgeError
from nca_edge.model import CAModel


@pytest.fixture
def saved(tmp_path, random_model):
    cfg = Config()
    save_checkpoint(tmp_path / "ck", random_model, cfg, iterations=12, recipe="nca-edge train ...")
    return tmp_path / "ck"


def test_round_trip_preserves_weights_config_and_metadata(saved, random_model):
    model, config, meta = load_checkpoint(saved)
    for (n, a), (_, b) in zip(random_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n
    assert config == Config()
    assert meta["iterations"] == 12 and meta["variant"] == "float" and meta["package_version"]


def test_any_of_the_two_paths_or_the_stem_loads(saved):
    for p in (saved, saved.with_suffix(".safetensors"), saved.with_suffix(".json")):
        load_checkpoint(p)


def test_nothing_written_is_a_pickle(saved):
    tpath, jpath = checkpoint_paths(saved)
    assert tpath.read_bytes()[:1] != b"\x80"  # pickle protocol marker
    json.loads(jpath.read_text())


def _restamp(saved):
    """Record the weights file's current SHA-256 in the sidecar: a consistent checkpoint (as another
    tool could write one) whose contents are wrong in some other way."""
    import hashlib

    tpath, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    meta["weights_sha256"] = hashlib.sha256(tpath.read_bytes()).hexdigest()
    jpath.write_text(json.dumps(meta))


def _edit_tensors(saved, fn, restamp=True):
    tpath, _ = checkpoint_paths(saved)
    t = load_file(str(tpath))
    fn(t)
    save_file(t, str(tpath))
    if restamp:
        _restamp(saved)


def test_weights_changed_after_saving_are_refused(saved):
    _edit_tensors(saved, lambda t: t["update1.bias"].__setitem__(0, t["update1.bias"][0] + 1e-3), restamp=False)
    with pytest.raises(NCAEdgeError, match="does not match the sidecar"):
        load_checkpoint(saved)


def test_weights_of_another_checkpoint_are_refused(saved, tmp_path):
    other = save_checkpoint(tmp_path / "other", CAModel(Config().ca), Config())
    checkpoint_paths(saved)[0].write_bytes(other.read_bytes())
    with pytest.raises(NCAEdgeError, match="another checkpoint"):
        load_checkpoint(saved)


def test_a_sidecar_without_the_weights_hash_is_refused(saved):
    _, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    del meta["weights_sha256"]
    jpath.write_text(json.dumps(meta))
    with pytest.raises(NCAEdgeError, match="no weights_sha256"):
        load_checkpoint(saved)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_even_with_a_matching_hash(saved, value):
    _edit_tensors(saved, lambda t: t["perceive.weight"].view(-1).__setitem__(7, value))
    with pytest.raises(NCAEdgeError, match="perceive.weight holds 1 non-finite"):
        load_checkpoint(saved)


def test_the_shipped_models_record_their_weights_hash():
    from nca_edge.checkpoint import default_models, read_sidecar

    for name in default_models():
        assert len(read_sidecar(resolve_model(name))["weights_sha256"]) == 64
        load_checkpoint(resolve_model(name))


def test_missing_tensor(saved):
    _edit_tensors(saved, lambda t: t.pop("update1.bias"))
    with pytest.raises(NCAEdgeError, match=r"missing tensors \['update1.bias'\]"):
        load_checkpoint(saved)


def test_extra_tensor(saved):
    _edit_tensors(saved, lambda t: t.__setitem__("spare", torch.zeros(3)))
    with pytest.raises(NCAEdgeError, match="unexpected tensors"):
        load_checkpoint(saved)


def test_misshaped_tensor(saved):
    _edit_tensors(saved, lambda t: t.__setitem__("update1.bias", torch.zeros(81)))
    with pytest.raises(NCAEdgeError, match=r"update1.bias has shape \(81,\)"):
        load_checkpoint(saved)


def test_config_that_does_not_match_the_tensors(saved):
    _, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    meta["config"]["ca"]["hidden"] = 64
    jpath.write_text(json.dumps(meta))
    with pytest.raises(NCAEdgeError, match="implies"):
        load_checkpoint(saved)


def test_unknown_config_field(saved):
    _, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    meta["config"]["ca"]["wings"] = 2
    jpath.write_text(json.dumps(meta))
    with pytest.raises(NCAEdgeError, match="invalid config.*wings"):
        load_checkpoint(saved)


def test_truncated_weights_file(saved):
    tpath, _ = checkpoint_paths(saved)
    tpath.write_bytes(tpath.read_bytes()[:100])
    _restamp(saved)
    with pytest.raises(NCAEdgeError, match="unreadable or corrupt"):
        load_checkpoint(saved)


def test_corrupt_sidecar(saved):
    _, jpath = checkpoint_paths(saved)
    jpath.write_text("{not json")
    with pytest.raises(NCAEdgeError, match="corrupt checkpoint sidecar"):
        load_checkpoint(saved)


def test_missing_weights(saved):
    checkpoint_paths(saved)[0].unlink()
    with pytest.raises(NCAEdgeError, match="weights not found"):
        load_checkpoint(saved)


def test_unknown_model_name_lists_the_shipped_ones():
    with pytest.raises(NCAEdgeError, match="not found.*float"):
        resolve_model("no-such-model")


def test_shipped_float_model_loads():
    model, config, meta = load_checkpoint(resolve_model("float"))
    assert config.ca == CAConfig()
    assert isinstance(model, CAModel)
    assert meta["iterations"] > 0 and meta["recipe"].startswith("nca-edge train")


@pytest.mark.parametrize("damage", ["nan", "changed"])
def test_eval_refuses_a_damaged_copy_of_a_shipped_model_with_one_line(tmp_path, damage):
    """issue 28's check: a copy of the shipped float with one NaN weight (hash re-stamped, as a
    careless tool would) or with one weight changed is refused by `nca-edge eval`, one line, rc 1."""
    import shutil

    from click.testing import CliRunner

    from nca_edge.cli import main

    for ext in (".safetensors", ".json"):
        shutil.copy(resolve_model("float").with_suffix(ext), tmp_path / f"f{ext}")
    value = float("nan") if damage == "nan" else 0.125
    _edit_tensors(tmp_path / "f", lambda t: t["update1.weight"].view(-1).__setitem__(0, value), restamp=damage == "nan")
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "f"), "--digits", "1", "--steps", "1", "--no-progress",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and r.output.count("error:") == 1 and "Traceback" not in r.output
    assert ("non-finite" if damage == "nan" else "does not match") in r.output
    assert not (tmp_path / "out").exists()
