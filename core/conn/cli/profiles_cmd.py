"""``conn profiles build|show|stats``: the commands (typer only at import; the work in
:mod:`conn.profiles`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

profiles_app = typer.Typer(
    help="Identity resolution: stitch identifiers from several sources into stable "
         "profiles, read by syncs as stream 'profiles.NAME' (docs/profiles.md).",
    no_args_is_help=True)

_Project = Annotated[Optional[Path], typer.Option(  # noqa: UP045 - typer needs Optional
    "--project", "-p", help="conn.yml or its folder (default: search upwards).")]
_Json = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines.")]
_Name = Annotated[Optional[str], typer.Argument(  # noqa: UP045
    help="A profile set under 'profiles:' (default: all).")]


@profiles_app.command("build")
def build_cmd(name: _Name = None, full: Annotated[bool, typer.Option(
        "--full", help="Re-stitch every record, not only the islands that changed (ids "
                       "of unchanged profiles are kept either way).")] = False,
              project: _Project = None, json_out: _Json = False) -> None:
    """Read every edge stream, stitch identifiers into profiles, keep their ids, record
    merges and splits, and compute golden records."""
    from conn.cli.common import open_project
    from conn.cli.output import info, print_json, table
    from conn.profiles.build import build, selected

    proj, registry = open_project(project, only=_edge_sources(project, name))
    selected(proj, name)
    results = build(proj, registry, name, full=full)
    if json_out:
        print_json({"ok": True, "builds": results})
        return
    table("profiles built", ["set", "records", "profiles", "re-stitched", "merges",
                             "splits", "junk values", "seconds"],
          [[r["name"], r["records"], r["profiles"], r["restitched"], r["merges"],
            r["splits"], r["junk_values"], r["seconds"]["total"]] for r in results])
    for r in results:
        info(f"{r['records']} records became {r['profiles']} profiles in "
             f"profiles.{r['name']}")


def _edge_sources(project: Path | None, name: str | None) -> set[str]:
    """The sources a build reads (only their plugins are loaded and checked)."""
    from conn.config import load_project
    from conn.config.profiles import profile_sets

    proj = load_project(project, validate_plugins=False)
    sets = profile_sets(proj)
    return {e.source for n, ps in sets.items() if name in (None, n)
            for e in ps.edges.values()}


@profiles_app.command("show")
def show_cmd(key: Annotated[str, typer.Argument(
        help="A profile id (p_...) or any identifier: an e-mail, a phone number, a "
             "customer or device id.")],
             name: Annotated[Optional[str], typer.Option(  # noqa: UP045
                 "--set", help="Only this profile set.")] = None,
             project: _Project = None, json_out: _Json = False) -> None:
    """A profile's identities, the edges it was seen in, its golden record, its merge
    history and the matched pairs that joined its records."""
    from conn.cli.common import open_project
    from conn.cli.output import info, print_json, table
    from conn.ops.profiles import show

    proj, _ = open_project(project, only=set())
    found = show(proj, key, name)
    if json_out:
        print_json({"ok": True, "profiles": found})
        return
    for p in found:
        info(f"profile {p['profile_id']} (profiles.{p['set']})")
        table("identities", ["type", "value", "records", "edges"],
              [[i["type"], i["value"], i["records"], ", ".join(i["edges"])]
               for i in p["identities"]])
        table("golden record", ["field", "value"],
              [[k, _text(v)] for k, v in p["golden"].items()])
        if p["history"]:
            table("merges and splits", ["when", "build", "kind", "old id", "new id", "cause"],
                  [[h["changed_at"], h["build_id"], h["kind"], h["old_id"], h["new_id"],
                    h["cause"] or ""]
                   for h in p["history"]])
        if p["matches"]:
            table("matched pairs", ["record", "record", "score", "matcher"],
                  [[m["record_a"], m["record_b"], f"{m['score']:.4g}", m["matcher"]]
                   for m in p["matches"]])


def _text(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return "" if v is None else str(v)


@profiles_app.command("stats")
def stats_cmd(name: _Name = None, project: _Project = None, json_out: _Json = False) -> None:
    """Cluster sizes, the largest profiles, identifiers at their limits and the junk
    values the last build found."""
    from conn.cli.common import open_project
    from conn.cli.output import info, print_json, table
    from conn.profiles.lookup import stats

    proj, _ = open_project(project, only=set())
    result = stats(proj, name)
    if json_out:
        print_json({"ok": True, "sets": result})
        return
    for s in result:
        info(f"profiles.{s['set']}: {s['records']} records, {s['profiles']} profiles "
             f"(last build {s['built_at']})")
        table("profile sizes (records)", ["size", "profiles"],
              [[b["size"], b["profiles"]] for b in s["sizes"]])
        table("largest profiles", ["profile", "records"],
              [[p["profile_id"], p["records"]] for p in s["largest"]])
        table("identifiers at their limit", ["type", "limit", "profiles"],
              [[x["type"], x["limit"], x["profiles"]] for x in s["at_limit"]])
        table("junk values (never join profiles)", ["type", "value", "records"],
              [[j["type"], j["value"], j["records"]] for j in s["junk"]])
