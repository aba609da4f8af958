"""``conn forget``: the command's body (wired into the CLI by ``conn.cli.main``).

Exit codes: 0 every destination confirmed; 1 some erasures stay pending (as a sync with
pending rows; they are retried by the sync's next run and by ``--retry``); 4 a
destination offers no erasure or delete (remove the person by hand, see the receipt);
3 configuration error; 5 a sync holding the person is running (try again when it ends);
8 the state store is unreadable, or (``--status``) the receipt chain was tampered with.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from conn.cli import output
from conn.cli.common import open_project


def _exit_for(receipt: dict[str, Any]) -> int:
    outcomes = {t.get("outcome") for t in receipt.get("targets", [])}
    if "pending" in outcomes:
        return 1
    return 4 if "manual" in outcomes else 0


def _target_line(t: dict[str, Any]) -> str:
    api = f" ({t['erasure_api']})" if t.get("erasure_api") else ""
    head = (f"- {t['sync']} -> {t['destination']}.{t['object']}: {t['operation']}{api}, "
            f"{t['records']} record(s)")
    if t.get("outcome") == "manual":
        return f"{head}: {t.get('note') or 'remove the person by hand'}"
    tries = t.get("attempts") or []
    last = tries[-1] if tries else {}
    err = f" ({last['error']})" if last.get("error") else ""
    return f"{head}: {t.get('outcome')}{err}, {len(tries)} attempt(s)"


def _print_receipt(r: dict[str, Any]) -> None:
    output.info(f"receipt {r['receipt_id']} ({r.get('created_at')}): {r.get('status')}; "
                f"{r.get('suppressed', 0)} identifier(s) suppressed (hashed)")
    for t in r.get("targets", []):
        output.info(_target_line(t))
    if not r.get("targets"):
        output.info("- no destination held the person (by conn's state)")


def forget_command(subjects: list[str], *, dry_run: bool, status: str | None, retry: bool,
                   project: Path | None, json_out: bool) -> None:
    """Run ``conn forget`` (see the module docstring for exit codes)."""
    from conn.errors import ConfigError
    from conn.runtime import forget
    from conn.runtime.runner import open_state_store

    modes = sum([bool(subjects), status is not None, retry])
    if modes != 1:
        raise ConfigError("conn forget takes SUBJECT..., or --status SUBJECT|RECEIPT_ID, "
                          "or --retry (one of them)")
    proj, registry = open_project(project)
    with contextlib.closing(open_state_store(proj, registry)) as store:
        if status is not None:
            result = forget.status(store, status)
            code = 8 if not result["chain"]["intact"] else 0 if result["receipts"] else 1
        elif retry:
            result = forget.retry(proj, registry, store)
            code = 1 if result["pending"] else 0
        else:
            result = forget.forget(proj, registry, store, subjects, dry_run=dry_run)
            code = 0 if dry_run else _exit_for(result)
    if json_out:
        output.print_json(result)
    else:
        _print(result, status=status, retry=retry, dry_run=dry_run)
    if code:
        sys.exit(code)


def _print(result: dict[str, Any], *, status: str | None, retry: bool, dry_run: bool) -> None:
    if status is not None:
        chain = result["chain"]
        if chain["intact"]:
            output.info(f"receipt chain intact: {chain['entries']} entries, last hash "
                        f"{chain['head']}")
        else:
            output.error("the receipt chain was tampered with: " + "; ".join(chain["problems"]))
        for r in result["receipts"]:
            _print_receipt(r)
        if not result["receipts"]:
            output.error("no receipt for that subject or receipt id")
    elif retry:
        output.info(f"pending erasures: {result['erased']} record(s) erased, "
                    f"{result['pending']} still pending")
    elif dry_run:
        output.info(f"conn forget (dry run: nothing sent, nothing changed): "
                    f"{result['identifiers']} identifier(s) would be suppressed (hashed)")
        for t in result["targets"]:
            api = f" ({t['erasure_api']})" if t.get("erasure_api") else ""
            output.info(f"- {t['sync']} -> {t['destination']}.{t['object']}: would "
                        f"{t['operation']}{api} {t['records']} record(s)"
                        + (f": {t['note']}" if t.get("note") else ""))
        if not result["targets"]:
            output.info("- no destination holds the person (by conn's state)")
    else:
        _print_receipt(result)
