"""Tables on a terminal: a number is never cut, whatever the terminal's width."""

from __future__ import annotations

import io

import pytest
from conn.cli import output
from conn.cli.sync_cmd import COLUMNS, SHORT
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.cli.test_cli import run_cli
from tests.conftest import examples
from tests.runtime.test_runtime import BASE_ROWS, PROJECT, people


def rendered(rows: list[list], width: int) -> str:
    console = Console(width=width, file=io.StringIO(), force_terminal=False,
                      color_system=None)
    console.print(output.render_table("conn sync", COLUMNS, rows, width, short=SHORT))
    return console.file.getvalue()  # type: ignore[attr-defined]


def lines_hold(text: str, value: str) -> bool:
    """``value`` stands whole on one line (not cut, not folded onto two)."""
    return any(value in line for line in text.splitlines())


sync_row = st.tuples(
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=40),
    st.sampled_from(["ok", "failed", "rejected", "unchanged"]),
    *[st.integers(0, 10**12)] * 8,
    st.floats(0, 10**5, allow_nan=False).map(lambda f: round(f, 3)),
).map(list)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(sync_row, min_size=1, max_size=4), st.integers(30, 200))
def test_numbers_are_never_cut(rows: list[list], width: int) -> None:
    text = rendered(rows, width)
    assert "…" not in text
    for row in rows:
        for value in row[2:]:
            assert lines_hold(text, str(value)), (width, value, text)
    assert max(len(line) for line in text.splitlines()) <= width


def test_eighty_columns_keep_every_count(proj_dir_80, monkeypatch, capsys) -> None:
    """The summary `conn sync` prints on an 80-column terminal (cut to '100…' once)."""
    people([(i, f"p{i}@example.com", f"P{i}", True) for i in range(1, 1001)])
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    assert code == 0
    assert "…" not in out and lines_hold(out, "1000")
    assert max(len(line) for line in out.splitlines()) <= 80


def test_wide_terminal_keeps_full_headers() -> None:
    text = rendered([["s1", "ok", 1, 2, 3, 4, 5, 6, 7, 8, 0.5]], 160)
    assert "consent denied" in text and "unchanged" in text


@pytest.fixture
def proj_dir_80(tmp_path, registry, monkeypatch):
    people(BASE_ROWS)
    (tmp_path / "conn.yml").write_text(PROJECT.replace("MODE", "upsert"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(output, "is_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    return tmp_path
