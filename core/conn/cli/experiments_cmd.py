"""``conn experiments list`` and ``conn experiments report``: holdout experiments as a
table on a terminal, tab-separated lines when piped, one JSON object with ``--json``."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from conn.cli import output
from conn.cli.common import open_project


def list_command(*, project: Path | None, json_out: bool) -> None:
    from conn.runtime.experiment_report import list_experiments
    from conn.runtime.runner import open_state_store

    proj, registry = open_project(project, only=set())
    with contextlib.closing(open_state_store(proj, registry)) as store:
        found = list_experiments(store)
    if json_out:
        output.print_json({"ok": True, "experiments": found})
        return
    rows = [[e["name"], e["sync"], float(e["percent"]), e["status"], e["started_at"],
             e["treatment"], e["holdout"]] for e in found]
    output.table("experiments", ["experiment", "sync", "percent", "status", "started",
                                 "treatment", "holdout"], rows)
    if not found and output.is_tty():
        output.info("no experiments yet: give a sync a 'holdout:' and run it "
                    "(docs/experiments.md)")


def report_command(name: str, outcome: str, *, source: str | None, key: list[str],
                   alpha: float, project: Path | None, json_out: bool) -> None:
    from conn.runtime.experiment_report import report
    from conn.runtime.runner import open_state_store

    proj, registry = open_project(project, only={source} if source else None)
    with contextlib.closing(open_state_store(proj, registry)) as store:
        result = report(proj, registry, store, name, outcome, source=source,
                        key=tuple(key), alpha=alpha)
    if json_out:
        output.print_json({"ok": True, **result})
        return
    _print_report(result)


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v * 100:+.2f} %" if signed else f"{v * 100:.2f} %"


def _ci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"[{_pct(ci[0], True)}, {_pct(ci[1], True)}]"


def _print_report(r: dict[str, Any]) -> None:
    t, h = r["treatment"], r["holdout"]
    conf = f"{r['confidence'] * 100:g} %"
    rows = [["treatment", t["members"], t["converted"], _pct(t["rate"])],
            ["holdout", h["members"], h["converted"], _pct(h["rate"])]]
    title = (f"experiment {r['experiment']} (sync {r['sync']}, {r['percent']:g} % held "
             f"out, {r['status']})")
    output.info(title)
    output.table("arms", ["arm", "members", "converted", "rate"], rows)
    p = r["p_value"]
    verdict = ("no comparison: an arm has no members" if p is None else
               f"significant at {r['alpha']:g}" if r["significant"] else
               f"not significant at {r['alpha']:g}")
    lines = [
        ("absolute uplift", f"{_pct(r['absolute'], True)}  {conf} CI {_ci(r['absolute_ci'])}"),
        ("relative uplift", f"{_pct(r['relative'], True)}  {conf} CI {_ci(r['relative_ci'])}"),
        ("p-value", "n/a" if p is None else f"{p:.4g}  ({r['method']})"),
        ("verdict", verdict),
    ]
    if output.is_tty():
        from rich.console import Console
        from rich.text import Text

        console = Console()
        for label, value in lines:
            style = "bold green" if label == "verdict" and r["significant"] else "bold"
            # Text, not markup: the intervals' brackets are not rich tags.
            console.print(Text.assemble((f"{label}: ", style), value), highlight=False)
    else:
        for label, value in lines:
            sys.stdout.write(f"{label}\t{value}\n")
