"""The layers read one way: config/recipes -> CA step -> trainer -> evaluator -> exporters -> firmware_sim.
The core (nca_edge/) never imports the layers above it (train/, export/); only the command line does."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (module level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_never_imports_train_or_export():
    offenders = {p.name: imported_packages(p) & {"train", "export"}
                 for p in (ROOT / "nca_edge").glob("*.py") if p.name != "cli.py"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_firmware_sim_is_numpy_only():
    allowed = {"numpy", "firmware_sim", "__future__", "dataclasses", "json", "struct", "zlib", "math", "typing",
               "pathlib", "hashlib", "enum", "functools", "itertools", "collections", "io", "os", "sys", "re", "argparse",
               "shutil", "tempfile"}  # the standard library and numpy: no torch, no TensorFlow
    used = {p.name: imported_packages(p) - allowed for p in (ROOT / "firmware_sim").glob("*.py")}
    assert {k: v for k, v in used.items() if v} == {}


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    import export\n    from train.recipes import run_recipe\n")
    assert imported_packages(f) == {"export", "train"}


def test_scripts_holds_only_what_users_and_ci_run():
    """Setup, tests, benchmarks and report builders; probes live in experiments/ (at most 11 Python files: one report per measured capability)."""
    assert len(list((ROOT / "scripts").glob("*.py"))) <= 11
    assert not list((ROOT / "scripts").glob("*probe*.py"))
