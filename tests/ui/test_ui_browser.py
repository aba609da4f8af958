"""The UI in a real browser (Playwright driving the system's Chromium): every page loads
without a script or policy error; a sync run from the UI shows up as a new run; a
rejected row is found by its key; a sync paused from the UI is skipped by ``conn sync``.

Screenshots of each page go to a temporary folder, and to docs/images/ (for docs/ui.md)
when ``CONN_UI_SCREENSHOTS=1``. Needs the ``chromium`` package (scripts/ensure-browser.sh
installs it; ``CONN_CHROMIUM`` names another binary)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import run_cli
from tests.runtime.test_runtime import people
from tests.ui.conftest import roster

pytestmark = pytest.mark.slow
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SYNC = "people_to_crm"


def chromium() -> str:
    path = os.environ.get("CONN_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: install the 'chromium' package (bash "
                    "scripts/ensure-browser.sh does, with apt-get) or set CONN_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright "
                                   "(in the 'test' extra)")
    with sync_api.sync_playwright() as pw:
        # Chromium's sandbox refuses to start as root (CI containers).
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        b = pw.chromium.launch(executable_path=chromium(), args=args)
        yield b
        b.close()


@pytest.fixture
def ui(ui_project, registry) -> Iterator[str]:
    from conn.ui.app import UiApp
    from conn.ui.guard import Guard
    from conn.ui.server import UiServer

    server = UiServer("127.0.0.1", 0, lambda port: UiApp(ui_project / "conn.yml", registry,
                                                         Guard(port)))
    server.start()
    yield server.url
    server.app.api.join(30)
    server.close()


def _watched_page(browser: Any) -> tuple[Any, Any]:
    """A new browser context and page whose console errors and script errors are
    collected in ``page.problems``."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.problems = problems
    pg.set_default_timeout(20_000)
    return ctx, pg


@pytest.fixture
def page(browser, ui) -> Iterator[Any]:
    ctx, pg = _watched_page(browser)
    yield pg
    ctx.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def visit(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    error = page.locator("[role=alert]")
    assert error.count() == 0, error.first.text_content()
    assert page.get_attribute("body", "data-loaded") == "1"
    assert page.problems == [], page.problems


def shoot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("CONN_UI_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / f"ui-{name}.png"), full_page=True)


def history(monkeypatch, capsys) -> list[dict]:
    out = run_cli(monkeypatch, capsys, "runs", SYNC, "--json")[1]
    return json.loads(out)["runs"]


def test_every_page_loads(page, ui, tmp_path, monkeypatch, capsys):
    # A few runs, so the chart has bars: first delivery, a change, new people.
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    people(roster(rename=" (renamed)")[:25] + roster()[25:])
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    people(roster(60))
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    run_id = history(monkeypatch, capsys)[0]["run_id"]
    visit(page, ui + "/")
    assert page.locator(f"tr[data-sync={SYNC}] svg.chart rect.sent").count() == 3
    shoot(page, "syncs", tmp_path)
    visit(page, f"{ui}/syncs/{SYNC}")
    assert page.locator("[data-testid=runs] tbody tr").count() == 3
    expect(page.locator("[data-testid=rejected] tbody tr")).to_have_count(2)
    shoot(page, "sync", tmp_path)
    visit(page, f"{ui}/runs/{run_id}")
    assert page.text_content("[data-testid=read] .n") == "60"
    assert page.locator("[data-testid=funnel] tbody tr").count() == 1  # marketing
    shoot(page, "run", tmp_path)
    people(roster(60, rename=" Jr"))
    visit(page, f"{ui}/syncs/{SYNC}/preview")
    assert page.text_content("[data-testid=would-insert] .n") == "2"  # the rejected two
    assert "Person 1 Jr" in page.text_content("[data-testid=requests]")
    shoot(page, "preview", tmp_path)
    visit(page, f"{ui}/people")
    page.fill("[data-testid=subject]", "3")
    page.press("[data-testid=subject]", "Enter")
    page.wait_for_url(f"{ui}/people/3")
    page.wait_for_selector("[data-testid=sent-by]")
    assert page.text_content("[data-testid=sent-by]") == SYNC
    assert page.text_content("[data-testid=verdict]") == "would send"
    assert page.problems == []
    shoot(page, "person", tmp_path)


def test_run_now_from_the_ui_adds_a_run(page, ui, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    visit(page, f"{ui}/syncs/{SYNC}")
    assert page.locator("[data-testid=runs] tbody tr").count() == 1
    page.click("[data-testid=run-now]")
    expect(page.locator("[data-testid=runs] tbody tr")).to_have_count(2)
    runs = history(monkeypatch, capsys)
    assert len(runs) == 2 and runs[0]["status"] == "rejected", runs[0]["report"]["error"]
    assert page.locator(f"tr[data-run='{runs[0]['run_id']}']").count() == 1


def test_a_rejected_row_is_found_by_its_key(page, ui, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "sync", "mem", "crm")
    visit(page, f"{ui}/syncs/{SYNC}")
    page.wait_for_selector("[data-testid=rejected] tbody tr")
    assert page.locator("[data-testid=rejected] tbody tr").count() == 2
    page.fill("[data-testid=key-search]", "23")
    expect(page.locator("[data-testid=rejected] tbody tr")).to_have_count(1)
    row = page.locator("[data-testid=rejected] tbody tr")
    assert row.get_attribute("data-key") == "23"
    assert "INVALID_EMAIL: bad23@example.com" in row.text_content()
    # The vendor exchange that rejected it: method, path and status, opening onto the
    # row as it was sent and the vendor's answer.
    ex = row.locator("[data-testid=excerpt]")
    assert ex.locator("summary").text_content() == "POST /v1/contacts \u2192 HTTP 422"
    expect(row.locator("[data-testid=excerpt-request]")).not_to_be_visible()
    ex.locator("summary").click()
    expect(row.locator("[data-testid=excerpt-request]")).to_be_visible()
    assert json.loads(row.locator("[data-testid=excerpt-request]").text_content()) == {
        "email": "bad23@example.com", "name": "Person 23"}
    assert "bad23@example.com is invalid" in \
        row.locator("[data-testid=excerpt-response]").text_content()
    page.fill("[data-testid=key-search]", "999")
    page.wait_for_selector("[data-testid=no-rejected]")
    # The run page searches the rows that run rejected.
    run_id = history(monkeypatch, capsys)[0]["run_id"]
    visit(page, f"{ui}/runs/{run_id}")
    page.fill("[data-testid=key-search]", "7")
    expect(page.locator("[data-testid=rejected] tbody tr")).to_have_count(1)
    assert [r.get_attribute("data-key") for r in
            page.locator("[data-testid=rejected] tbody tr").all()] == ["7"]
    assert page.locator("[data-testid=rejected] [data-testid=excerpt] summary").text_content() \
        == "POST /v1/contacts \u2192 HTTP 422"


def test_a_sync_paused_in_the_ui_is_skipped_by_conn_sync(page, ui, monkeypatch, capsys):
    visit(page, ui + "/")
    row = f"tr[data-sync={SYNC}]"
    page.click(f"{row} [data-testid=pause]")
    page.wait_for_selector(f"{row} [data-testid=resume]")
    assert page.text_content(f"{row} [data-testid=status]") == "paused"
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert code == 0 and json.loads(out)["syncs"][0]["status"] == "paused"
    assert history(monkeypatch, capsys) == []
    page.click(f"{row} [data-testid=resume]")
    page.wait_for_selector(f"{row} [data-testid=pause]")
    code, out, _ = run_cli(monkeypatch, capsys, "sync", "mem", "crm", "--json")
    assert json.loads(out)["syncs"][0]["status"] == "rejected"


def test_with_a_token_the_page_works_only_when_given_it(browser, ui_project, registry):
    from conn.ui.app import UiApp
    from conn.ui.guard import Guard
    from conn.ui.server import UiServer

    server = UiServer("127.0.0.1", 0, lambda port: UiApp(ui_project / "conn.yml", registry,
                                                         Guard(port, token="s3cret-t0ken")))
    server.start()
    ctx = browser.new_context()
    try:
        pg = ctx.new_page()
        pg.goto(server.url + "/")
        pg.wait_for_selector("body[data-ready]")
        assert "token" in pg.text_content("[role=alert]")
        pg.goto(server.url + "/#token=s3cret-t0ken")  # the same page: only the hash changes
        pg.wait_for_selector(f"tr[data-sync={SYNC}]")
        assert "s3cret" not in pg.url  # taken out of the address bar
        pg.goto(f"{server.url}/syncs/{SYNC}")  # the tab keeps it
        pg.wait_for_selector("[data-testid=run-now]")
        other = browser.new_context().new_page()  # another tab has none
        other.goto(f"{server.url}/syncs/{SYNC}")
        other.wait_for_selector("body[data-ready]")
        assert "token" in other.text_content("[role=alert]")
        other.context.close()
    finally:
        ctx.close()
        server.close()


@pytest.fixture
def demo_page(browser, demo, demo_registry) -> Iterator[tuple[Any, str]]:
    """A page and the UI's address, over the demo project (tests/ui/conftest.py)."""
    from conn.ui.app import UiApp
    from conn.ui.guard import Guard
    from conn.ui.server import UiServer

    server = UiServer("127.0.0.1", 0, lambda port: UiApp(demo / "conn.yml", demo_registry,
                                                         Guard(port)))
    server.start()
    ctx, pg = _watched_page(browser)
    try:
        yield pg, server.url
    finally:
        ctx.close()
        server.close()


def test_profiles_triggers_and_experiments_pages(demo_page, demo_app, tmp_path):
    """Each page loads without a script or policy error and shows what the API (the
    CLI's --json) holds."""
    from tests.ui.conftest import DROPPED, MERGING, MERGING_DEVICE, call

    page, ui = demo_page
    stats = call(demo_app, "GET", "/api/profiles")[1]["sets"][0]
    visit(page, ui + "/profiles")
    assert page.text_content("[data-testid=set-profiles] .n") == f"{stats['profiles']:,}"
    assert page.locator("[data-testid=sizes] tbody tr").count() == len(stats["sizes"])
    assert "test@test.com" in page.text_content("[data-testid=junk]")
    largest = stats["largest"][0]["profile_id"]
    assert page.locator(f"[data-testid=largest] a:text-is('{largest}')").count() == 1
    shoot(page, "profiles", tmp_path)
    page.fill("[data-testid=profile-key]", MERGING)
    page.press("[data-testid=profile-key]", "Enter")
    page.wait_for_url(f"**/profiles/{MERGING}")
    page.wait_for_selector("body[data-ready]")
    shown = call(demo_app, "GET", f"/api/profiles/{MERGING}")[1]["profiles"]
    expect(page.locator("[data-testid=profile]")).to_have_count(len(shown))
    assert MERGING_DEVICE in page.text_content("[data-testid=identities]")
    (merge,) = [h for h in shown[0]["history"] if h["kind"] == "merge"]
    expect(page.locator(f"[data-testid=merges] td:text-is('{merge['old_id']}')")
           ).to_have_count(1)
    edges = sorted({e for i in shown[0]["identities"] for e in i["edges"]})
    assert page.text_content("[data-testid=sources]").endswith(", ".join(edges))
    assert page.problems == []
    shoot(page, "profile", tmp_path)

    trig = call(demo_app, "GET", "/api/triggers")[1]["triggers"][0]
    visit(page, ui + "/triggers")
    section = page.locator("[data-trigger=health_dropped]")
    assert "below: 40" in section.locator("[data-testid=definition]").text_content()
    assert section.locator("[data-testid=fired] .n").text_content() == \
        str(trig["events_fired"])
    assert section.locator("[data-testid=delivered] .n").text_content() == \
        str(trig["events_delivered"])
    keys = {r.get_attribute("data-key") for r in
            section.locator("[data-testid=firings] tbody tr").all()}
    assert {str(c) for c in DROPPED} <= keys
    shoot(page, "triggers", tmp_path)
    visit(page, ui + "/triggers/health_dropped")
    assert page.locator("[data-testid=trigger]").count() == 1

    visit(page, ui + "/experiments")
    row = page.locator("tr[data-experiment=customers_to_crm]")
    exp = call(demo_app, "GET", "/api/experiments")[1]["experiments"][0]
    assert f"{exp['holdout']:,}" in row.text_content()
    shoot(page, "experiments", tmp_path)
    row.locator("a").click()
    page.wait_for_selector("[data-testid=outcome]")
    page.fill("[data-testid=outcome]", "product_events")
    page.press("[data-testid=outcome]", "Enter")
    page.wait_for_selector("[data-testid=verdict]")
    rep = call(demo_app, "GET", "/api/experiments/customers_to_crm/report"
                                "?outcome=product_events")[1]
    assert page.text_content("[data-testid=rate-holdout]") == \
        f"{rep['holdout']['rate'] * 100:.2f} %"
    assert page.text_content("[data-testid=p-value] .n") == \
        ("n/a" if rep["p_value"] is None else page.text_content("[data-testid=p-value] .n"))
    assert ("not significant" in page.text_content("[data-testid=verdict]")) == \
        (not rep["significant"])
    assert page.problems == []
    shoot(page, "experiment", tmp_path)
