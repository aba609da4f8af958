"""A person: ``conn explain SUBJECT`` and the UI's person page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conn.runtime.explain import explain

if TYPE_CHECKING:
    from conn.config.model import Project
    from conn.plugins import Registry
    from conn.state.contracts import StateStore


def explain_person(proj: Project, subject: str, registry: Registry, store: StateStore
                   ) -> dict[str, Any]:
    """Where ``subject``'s data goes and why (:func:`conn.runtime.explain.explain`), plus
    ``profiles``: the profiles holding the subject, each with what the syncs reading its
    profile set do with it."""
    result = explain(proj, subject, registry, store=store)
    result["profiles"] = _profiles(proj, subject, registry, store)
    return result


def _profiles(proj: Project, subject: str, registry: Registry, store: StateStore
              ) -> list[dict[str, Any]]:
    """The profiles holding ``subject`` (any identifier, or a profile id), each with
    what the syncs reading its profile set do with it."""
    from conn.profiles.lookup import find_profiles

    found = find_profiles(proj, subject) if "profiles" in proj.raw else []
    for p in found:
        stream = f"profiles.{p['set']}"
        if p["profile_id"] == subject:
            p["syncs"] = []  # the subject's own explanation above covers them
            continue
        syncs = explain(proj, p["profile_id"], registry, store=store)["syncs"]
        p["syncs"] = [s for s in syncs
                      if proj.syncs[s["sync"]].stream == stream]
    return found
