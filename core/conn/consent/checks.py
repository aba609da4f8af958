"""Configuration checks of a sync's consent settings, run before any row is read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conn.errors import ConfigError

if TYPE_CHECKING:
    from conn.sync_context import SyncContext


def consent_issues(ctx: SyncContext) -> list[ConfigError]:
    """Every problem with ``syncs.NAME.consent`` for this sync, at once: consent columns
    or the subject column missing from the stream, and purposes nothing could ever
    allow (no column, no consent source, no legal basis: every row would be withheld)."""
    f = str(ctx.project.file)
    base = f"syncs.{ctx.sync.name}.consent"
    consent = ctx.sync.consent or {}
    names = set(ctx.stream.schema.names)
    errs: list[ConfigError] = []
    columns = dict(consent.get("columns") or {})
    for purpose, col in columns.items():
        if col not in names:
            errs.append(ConfigError(f"consent column {col!r} for purpose {purpose!r} is not "
                                    f"a column of stream {ctx.stream.name!r}",
                                    file=f, path=f"{base}.columns.{purpose}"))
    subject = consent.get("subject")
    if subject and subject not in names:
        errs.append(ConfigError(f"subject column {subject!r} is not a column of stream "
                                f"{ctx.stream.name!r}", file=f, path=f"{base}.subject"))
    source = consent.get("source")
    if source and source not in ctx.project.consent_sources:
        errs.append(ConfigError(f"unknown consent source {source!r}", file=f,
                                path=f"{base}.source"))
    bases = dict(consent.get("legal_basis") or {})
    for purpose in ctx.purposes:
        if purpose not in columns and not source and purpose not in bases:
            errs.append(ConfigError(
                f"purpose {purpose!r} has no consent column, no consent source and no "
                f"legal basis, so every row would be withheld; add "
                f"consent.columns.{purpose}, consent.source or consent.legal_basis."
                f"{purpose}", file=f, path=base))
    for purpose in bases:
        if purpose not in ctx.purposes:
            errs.append(ConfigError(f"legal basis for {purpose!r}, which is not a purpose "
                                    f"of this sync ({', '.join(ctx.purposes) or 'none'})",
                                    file=f, path=f"{base}.legal_basis.{purpose}"))
    from conn.consent.expiry import expiry_issues

    return errs + expiry_issues(ctx)
