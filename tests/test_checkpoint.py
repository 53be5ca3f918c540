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


def _edit_tensors(saved, fn):
    tpath, _ = checkpoint_paths(saved)
    t = load_file(str(tpath))
    fn(t)
    save_file(t, str(tpath))


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
