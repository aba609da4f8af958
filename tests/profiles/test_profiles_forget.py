"""``conn forget`` reaches the whole person through their profile (docs/privacy.md,
docs/profiles.md): forgetting one secondary e-mail erases the profile's record from a
destination a profile sync delivered it to (keyed by profile id), leaves none of the
person's identifiers in the profile store, and keeps every identity of theirs out of the
next runs, even after a build that reads them from the sources again."""

from __future__ import annotations

import json

import pytest

from tests.profiles.test_profiles_cli import cli, project, snapshot

__all__ = ["project"]  # the fixture, shared with the profiles CLI tests


@pytest.mark.slow
def test_forgetting_one_identity_erases_the_profile(project, monkeypatch, capsys):
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    assert cli(monkeypatch, capsys, "sync", "profiles", "out")[0] == 0
    first = snapshot(project)
    ann = {r["email"]: k for k, r in first.items()}["ann@example.com"]
    code, out = cli(monkeypatch, capsys, "forget", "--dry-run", " Ann.Work@Example.com",
                    "--json")
    assert code == 0, out
    assert json.loads(out)["profiles"] == 1
    code, out = cli(monkeypatch, capsys, "forget", " Ann.Work@Example.com", "--json")
    assert code == 0, out
    # The profile sync's record, keyed by profile id, is erased at the destination.
    assert set(snapshot(project)) == set(first) - {ann}
    # Nothing of her stays in the profile store, by any of her identifiers.
    for key in ("ann@example.com", "dev-a", "c1", ann):
        code, out = cli(monkeypatch, capsys, "profiles", "show", key, "--json")
        assert code == 1 and "no profile holds" in out, (key, out)
    # The sources still hold her: a build brings her profile back to the store, and the
    # suppression list keeps it from the destination.
    assert cli(monkeypatch, capsys, "profiles", "build")[0] == 0
    code, out = cli(monkeypatch, capsys, "sync", "profiles", "out", "--json")
    assert code == 0, out
    assert set(snapshot(project)) == set(first) - {ann}
