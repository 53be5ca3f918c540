"""Robustness tables and figures (docs/results/robustness.md, docs/results/robustness/*.png).

    python scripts/robustness_report.py --variant bnn --digits 1000 --write docs/results/robustness.md
    python scripts/robustness_report.py --variant float --no-baseline --digits 1000 --merge --write docs/results/robustness.md

Runs `nca-edge robustness` (export/robustness.py) and writes one table per fault: accuracy /
agreement at step 200 for every CA variant, accuracy for every baseline CNN, with the command
that measured each row. --merge keeps the rows already in the fragment's JSON that this run does
not measure again (so several runs, e.g. one per core, make one fragment); --combine A.json B.json
measures nothing and makes the fragment from the rows of earlier runs (each row keeps its command).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export import robustness as rb  # noqa: E402
from export.report import command, publish, text_table  # noqa: E402
from nca_edge.baseline import shipped_baselines  # noqa: E402
from nca_edge.data import load_digits  # noqa: E402


def fragment(rows: list[dict], figures: str | None, combined_by: str = "") -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    kinds = {r["model"]: r["kind"] for r in rows}
    lines = ["# Robustness", "",
             "Accuracy at step 200 (percent; CA: average cell accuracy / total agreement, CNN: share of test "
             "images classified right) on the first N MNIST test digits, on the deployed integer semantics "
             "(`firmware_sim`). Faults, units and what each means for a CNN: `export/robustness.py`.", ""]
    clean = {r["model"]: r for r in rows if r["fault"] == "none"}
    for fault in rb.FAULTS:
        fr = [r for r in rows if r["fault"] == fault]
        if not fr:
            continue
        unit = rb.UNITS[fault]
        lines += [f"### {fault}" + (f" ({unit})" if unit else ""), ""]
        have = [m for m in models if any(r["model"] == m for r in fr)]
        head = ["rate"] + [f"{m} ({'CA' if kinds[m] == 'ca' else 'CNN'})" for m in have]
        cells = [head]
        rates = sorted({r["rate"] for r in fr})
        for rate in rates:
            line = [rb._cell(float(rate))]
            for m in have:
                r = next((r for r in fr if r["model"] == m and r["rate"] == rate), None)
                if r is None:
                    line.append("")
                elif r["agreement_200"] is None:
                    line.append(f"{r['accuracy_200']:.1f}")
                else:
                    line.append(f"{r['accuracy_200']:.1f} / {r['agreement_200']:.1f}")
            cells.append(line)
        lines += text_table(cells, "markdown") + [""]
        digits = sorted({r["digits"] for r in fr})
        lines += [f"Digits: {', '.join(f'{d:,}' for d in digits)}. Clean (rate 0): " + ", ".join(
            f"{m} {clean[m]['accuracy_200']:.1f}" for m in have if m in clean) + ".", ""]
        if figures and fault != "none":
            lines += [f"![{fault}]({figures}/robustness_{fault}.png)", ""]
    cmds = list(dict.fromkeys(r.get("command", "") for r in rows if r.get("command")))
    lines += ["Commands:", ""] + [f"    {c}" for c in cmds] + [""]
    if combined_by:
        lines += ["Combined into this page by:", "", f"    {combined_by}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=None, help="CA model (repeat); default float, bwn, ban, bnn")
    ap.add_argument("--baseline", action="append", default=None, help="baseline CNN (repeat); default all shipped")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-ca", action="store_true", help="baselines only")
    ap.add_argument("--fault", action="append", default=None)
    ap.add_argument("--digits", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument("--combine", nargs="+", type=Path, default=None, metavar="JSON",
                    help="measure nothing: make the fragment from these earlier runs' rows")
    a = ap.parse_args()
    if a.combine:
        rows = {}
        for f in a.combine:  # a later file's row replaces an earlier one's for the same model, fault and rate
            rows.update({(r["model"], r["fault"], r["rate"]): r for r in json.loads(f.read_text())})
        rows, old = list(rows.values()), []
    else:
        variants = [] if a.no_ca else (a.variant or ["float", "bwn", "ban", "bnn"])
        baselines = [] if a.no_baseline else (a.baseline or shipped_baselines())
        rows = rb.robustness(variants, baselines, load_digits("mnist"), a.digits, seed=a.seed, faults=a.fault,
                             progress=not a.no_progress, log=lambda m: print(m, file=sys.stderr))
        cmd = command()
        for r in rows:
            r["command"] = cmd
        old = []
        if a.merge and a.write and a.write.with_suffix(".json").is_file():
            keep = {(r["model"], r["fault"], r["rate"]) for r in rows}
            old = [r for r in json.loads(a.write.with_suffix(".json").read_text())
                   if (r["model"], r["fault"], r["rate"]) not in keep]
    order = {m: i for i, m in enumerate(["float", "bwn", "ban", "bnn"] + shipped_baselines())}
    rows = sorted(old + rows, key=lambda r: (r["kind"] != "ca", order.get(r["model"], 9), r["model"],
                                              rb.FAULTS.index(r["fault"]), r["rate"]))
    figures = None
    if a.write:
        fig_dir = a.write.with_suffix("")
        rb.plot(rows, fig_dir)
        figures = f"results/{fig_dir.name}"
    publish(fragment(rows, figures, command() if a.combine else ""), rows, a.write)


if __name__ == "__main__":
    main()
