"""`nca-edge compare`: schema in every format, sizes by hand, and numbers that are eval's own."""

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner

from nca_edge.cli import main
from nca_edge.config import CAConfig
from nca_edge.size import float32_bytes, packed_bytes, tensor_table

KEYS = ["variant", "weight_bits", "kernel_bits", "activation_bits", "params", "packed_bytes", "float32_bytes",
        "accuracy_200", "agreement_200", "accuracy_400", "agreement_400"]


def test_packed_sizes_by_hand():
    kernel_bits = 9 * 20 * 80 + 80 * 80 + 80 * 19  # 22,320 weights
    assert packed_bytes(CAConfig()) == float32_bytes(CAConfig()) == 4 * 22_499
    # bwn: 1 bit per weight + a 32-bit scale and a 32-bit bias per output channel
    assert packed_bytes(CAConfig(quant="bwn")) == kernel_bits // 8 + (80 + 80 + 19) * 8
    # bnn: 1 bit per weight; layers 1-2 fold scale and bias into one threshold; layer 3 keeps both
    assert packed_bytes(CAConfig(quant="bnn")) == kernel_bits // 8 + (80 + 80) * 4 + 19 * 8
    assert packed_bytes(CAConfig(quant="bnn")) <= 4096
    assert packed_bytes(CAConfig(quant="bnn", binary_input=True)) == packed_bytes(CAConfig(quant="bnn")) + 20
    # real first/last layers of a binary variant: int8 kernels with a 32-bit scale and bias per channel
    ends = CAConfig(quant="bnn", real_weights=("perceive", "update2"))
    assert packed_bytes(ends) == 9 * 20 * 80 + 80 * 4 + 80 * 80 // 8 + 80 * 4 + 80 * 19 + 19 * 8


def test_every_variant_lists_binary_tensors_at_one_bit():
    bnn = {t.name: t.bits for t in tensor_table(CAConfig(quant="bnn"))}
    assert bnn["perceive.weight"] == bnn["update1.weight"] == bnn["update2.weight"] == 1
    assert bnn["perceive output"] == bnn["update1 output"] == 1
    ban = {t.name: t.bits for t in tensor_table(CAConfig(quant="ban"))}
    assert ban["perceive.weight"] == 32 and ban["update1 output"] == 1


def test_verbose_table_says_whether_a_binary_kernels_scale_is_trained_or_derived():
    note = lambda **kw: {t.name: t.note for t in tensor_table(CAConfig(quant="bwn", **kw))}["update1.scale"]
    assert "trained" in note(learned_scale=True)
    assert note(learned_scale=False) == "alpha_o = mean|W[o]|"


@pytest.fixture
def shipped_copy(tmp_path):
    from nca_edge.checkpoint import resolve_model

    src = resolve_model("float")
    for suffix in (".safetensors", ".json"):
        shutil.copy(src.with_suffix(suffix), tmp_path / f"m{suffix}")
    return tmp_path / "m"


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_every_format_has_the_schema_and_eval_numbers(shipped_copy, tmp_path):
    from nca_edge.checkpoint import load_checkpoint
    from nca_edge.data import load_digits
    from nca_edge.evaluate import evaluate

    common = [str(shipped_copy), "--digits", "4", "--no-progress", "--no-export-sizes"]
    rows = json.loads(_run("compare", *common, "--format", "json").stdout)
    assert len(rows) == 1 and all(k in rows[0] for k in KEYS)
    model, _, _ = load_checkpoint(shipped_copy)
    d = load_digits()
    s = evaluate(model, d.test_x[:4], d.test_y[:4]).summary()
    for k in ("accuracy_200", "agreement_200", "accuracy_400", "agreement_400"):
        assert rows[0][k] == s[k]
    assert rows[0]["metrics"] == "computed"

    got = list(csv.DictReader(io.StringIO(_run("compare", *common, "--format", "csv").stdout)))
    assert set(KEYS) <= set(got[0]) and float(got[0]["accuracy_200"]) == s["accuracy_200"]
    md = _run("compare", *common, "--format", "markdown").stdout
    assert md.splitlines()[0].startswith("| model | variant |")
    table = _run("compare", *common, "--verbose", "--plot", str(tmp_path / "p.png")).stdout
    assert "every tensor's bit width" in table and (tmp_path / "p.png").is_file()


def test_recorded_metrics_from_eval_are_reused_and_equal(shipped_copy, tmp_path):
    args = ["--digits", "3", "--no-progress"]
    assert _run("eval", str(shipped_copy), *args, "--save-metrics", "--out", str(tmp_path / "e")).exit_code == 0
    evald = json.loads((tmp_path / "e" / "eval.json").read_text())["summary"]
    row = json.loads(_run("compare", str(shipped_copy), *args, "--no-export-sizes", "--format", "json").stdout)[0]
    assert row["metrics"] == "recorded"
    assert row["accuracy_200"] == evald["accuracy_200"] and row["agreement_400"] == evald["agreement_400"]


def test_export_size_columns_are_the_sizes_of_real_exported_files(shipped_copy, tmp_path, monkeypatch):
    import export

    monkeypatch.setenv("NCA_EDGE_CACHE", str(tmp_path / "cache"))
    row = json.loads(_run("compare", str(shipped_copy), "--digits", "1", "--no-progress", "--format", "json").stdout)[0]
    assert row["onnx_bytes"] == len(export.build(str(shipped_copy), "onnx")[0])
    assert row["packed_file_bytes"] == len(export.build(str(shipped_copy), "packed")[0])
    assert row["tflite_bytes"] > 0 and row["tflite_int8_bytes"] > 0
    assert row["lce_bytes"] is None  # no lce export for a float model (and none yet at all)
    assert (tmp_path / "cache" / "export_sizes.json").is_file()
