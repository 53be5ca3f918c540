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
    """Record the weights file's and the config's current SHA-256 in the sidecar: a consistent
    checkpoint (as another tool could write one) whose contents are wrong in some other way."""
    import hashlib

    from nca_edge.checkpoint import config_sha256

    tpath, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    meta["weights_sha256"] = hashlib.sha256(tpath.read_bytes()).hexdigest()
    if isinstance(meta.get("config"), dict):
        meta["config_sha256"] = config_sha256(meta["config"])
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
    _restamp(saved)
    with pytest.raises(NCAEdgeError, match="implies"):
        load_checkpoint(saved)


def test_unknown_config_field(saved):
    _, jpath = checkpoint_paths(saved)
    meta = json.loads(jpath.read_text())
    meta["config"]["ca"]["wings"] = 2
    jpath.write_text(json.dumps(meta))
    _restamp(saved)
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


def test_a_checkpoint_relabelled_as_another_variant_is_refused(tmp_path):
    """bwn and bnn share their tensors' names and shapes: only the config's hash tells them apart."""
    cfg = Config(ca=CAConfig(quant="bwn", real_weights=("perceive", "update2")))
    save_checkpoint(tmp_path / "b", CAModel(cfg.ca), cfg)
    _, jpath = checkpoint_paths(tmp_path / "b")
    meta = json.loads(jpath.read_text())
    meta["config"]["ca"]["quant"] = meta["variant"] = "bnn"
    jpath.write_text(json.dumps(meta))
    with pytest.raises(NCAEdgeError, match="config_sha256"):
        load_checkpoint(tmp_path / "b")


@pytest.mark.parametrize("tensor, value, message", [
    ("update1.weight", 1.5, "leave \\[-1, 1\\]"),
    ("update1.scale", -0.1, "scale <= 0"),
])
def test_a_binary_kernel_outside_what_training_writes_is_refused(tmp_path, tensor, value, message):
    cfg = Config(ca=CAConfig(quant="bnn", real_weights=("perceive", "update2"), learned_scale=True))
    save_checkpoint(tmp_path / "b", CAModel(cfg.ca), cfg)
    _edit_tensors(tmp_path / "b", lambda t: t[tensor].view(-1).__setitem__(0, value))
    with pytest.raises(NCAEdgeError, match=message):
        load_checkpoint(tmp_path / "b")


def test_any_damage_to_a_checkpoint_is_one_clear_error(saved):
    """Fuzz: bytes of the sidecar or the weights changed (hashes re-stamped or not): the loader
    returns a model or raises NCAEdgeError, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tpath, jpath = checkpoint_paths(saved)
    weights, sidecar = tpath.read_bytes(), jpath.read_bytes()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.booleans(), st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=6),
           st.booleans())
    def check(in_sidecar, edits, restamp):
        target = bytearray(sidecar if in_sidecar else weights)
        for at, value in edits:
            target[at % len(target)] = value
        jpath.write_bytes(bytes(target) if in_sidecar else sidecar)
        tpath.write_bytes(weights if in_sidecar else bytes(target))
        if restamp:
            try:
                _restamp(saved)
            except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
                pass  # the sidecar is no JSON object any more: nothing to re-stamp
        try:
            load_checkpoint(saved)
        except NCAEdgeError:
            pass

    check()
