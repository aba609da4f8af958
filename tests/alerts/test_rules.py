"""The rules as docs/alerts.md states them, against plain models: random reports and run
histories (hypothesis), and the cooldown/resolved state machine."""

from __future__ import annotations

from fractions import Fraction

from conn.alerts.engine import decide
from conn.alerts.rules import Verdict, evaluate
from conn.config.alerts import Rule
from hypothesis import given
from hypothesis import strategies as st

STATUSES = ["ok", "rejected", "failed", "interrupted"]


def rule(when: str, **kw) -> Rule:
    return Rule(name="r", when=when, channels=("c",), syncs=None, cooldown=60.0, **kw)


def run_row(i: int, status: str, inserted: int, updated: int, deleted: int) -> dict:
    report = {"name": "s", "run_id": f"r{i}", "status": status, "inserted": inserted,
              "updated": updated, "deleted": deleted, "rows_read": inserted + updated}
    return {"sync": "s", "run_id": f"r{i}", "status": status, "report": report}


counts = st.integers(min_value=0, max_value=10_000)
history_rows = st.lists(st.tuples(st.sampled_from(STATUSES), counts, counts, counts),
                        max_size=40)


def model_volume(value: int, history: list[tuple[str, int, int, int]], window: int,
                 min_runs: int, mad: float | None, percent: float | None) -> bool | None:
    """docs/alerts.md, "volume", written out plainly (newest run first in ``history``)."""
    past = [i + u + d for s, i, u, d in history if s in ("ok", "rejected")][:window]
    if len(past) < min_runs:
        return None

    def med(xs: list[Fraction]) -> Fraction:
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 == 1 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    m = med([Fraction(x) for x in past])
    half = []
    if mad is not None:
        half.append(Fraction(mad) * med([abs(Fraction(x) - m) for x in past]))
    if percent is not None:
        half.append(Fraction(percent) * m / 100)
    w = max(half)
    return not (m - w <= value <= m + w)


@given(history=history_rows, value=counts, window=st.integers(1, 15),
       min_runs=st.integers(1, 15),
       band=st.sampled_from(["mad", "percent", "both"]),
       k=st.sampled_from([0.5, 1.0, 2.5, 3.0, 0.1]),
       p=st.sampled_from([1.0, 10.0, 33.3, 50.0, 200.0]))
def test_volume_rule_matches_the_documented_model(history, value, window, min_runs, band,
                                                  k, p):
    min_runs = min(min_runs, window)
    mad = k if band in ("mad", "both") else None
    percent = p if band in ("percent", "both") else None
    r = rule("volume", window=window, min_runs=min_runs, mad=mad, percent=percent)
    rows = [run_row(i, *h) for i, h in enumerate(history)]
    # The run being judged is in the history too (it is recorded first): it is skipped.
    current = {"name": "s", "run_id": "now", "status": "ok", "inserted": value}
    rows.insert(0, {"sync": "s", "run_id": "now", "status": "ok", "report": current})
    verdict = evaluate(r, current, rows)
    assert verdict.firing == model_volume(value, history, window, min_runs, mad, percent)


@given(history=history_rows, value=counts)
def test_volume_edges_never_fire_and_a_failed_run_is_not_compared(history, value):
    rows = [run_row(i, *h) for i, h in enumerate(history)]
    r = rule("volume", window=10, min_runs=1, percent=50.0)
    failed = {"name": "s", "run_id": "now", "status": "failed", "inserted": value}
    assert evaluate(r, failed, rows).firing is None
    verdict = evaluate(r, {"name": "s", "run_id": "now", "status": "ok", "inserted": value},
                       rows)
    if verdict.firing is not None:
        low, high = verdict.figures["low"], verdict.figures["high"]
        assert verdict.firing == (value < low or value > high)


@given(inserted=counts, updated=counts, deleted=counts, rejected=counts,
       above=st.floats(0, 1), status=st.sampled_from(["ok", "rejected", "failed"]))
def test_rejected_share_matches_the_documented_model(inserted, updated, deleted, rejected,
                                                     above, status):
    report = {"status": status, "inserted": inserted, "updated": updated,
              "deleted": deleted, "rejected": rejected}
    whole = inserted + updated + deleted + rejected
    expected = whole > 0 and Fraction(rejected, whole) > Fraction(above)
    assert evaluate(rule("rejected_share", above=above), report, []).firing == expected


@given(read=counts, denied=counts, above=st.floats(0, 1))
def test_consent_withheld_share_matches_the_documented_model(read, denied, above):
    denied = min(denied, read)
    report = {"status": "ok", "rows_read": read, "consent_denied": denied}
    expected = read > 0 and Fraction(denied, read) > Fraction(above)
    verdict = evaluate(rule("consent_withheld_share", above=above), report, [])
    assert verdict.firing == expected


def test_failed_rule_and_silent_statuses():
    failed = rule("failed")
    assert evaluate(failed, {"status": "failed", "error_type": "RetryLater"}, []).firing
    assert evaluate(failed, {"status": "ok"}, []).firing is False
    assert evaluate(failed, {"status": "rejected"}, []).firing is False
    for status in ("interrupted", "dry_run", "paused"):  # paused: conn pause
        assert evaluate(failed, {"status": status}, []).firing is None
        assert evaluate(rule("rejected_share", above=0.0),
                        {"status": status, "rejected": 5}, []).firing is None


FIRING, QUIET, UNKNOWN = Verdict(True, ""), Verdict(False, ""), Verdict(None, "")


@given(steps=st.lists(st.tuples(st.sampled_from(["fire", "quiet", "unknown"]),
                                st.integers(0, 200), st.booleans()), max_size=30))
def test_state_machine_sends_once_per_cooldown_and_resolves(steps):
    """A model of the notices: 'firing' when a rule starts firing or fires on after the
    cooldown since the last notice that went; 'resolved' once when it stops; a notice
    no channel took is tried again next time."""
    cooldown, now = 60.0, 0.0
    state: dict | None = None
    model_firing, model_last = False, None
    for what, dt, delivered in steps:
        now += dt
        verdict = {"fire": FIRING, "quiet": QUIET, "unknown": UNKNOWN}[what]
        kind = decide(state, verdict, now, cooldown)
        if what == "fire":
            want = ("firing" if not model_firing or model_last is None
                    or now - model_last >= cooldown else None)
        elif what == "quiet":
            want = "resolved" if model_firing else None
        else:
            want = None
        assert kind == want
        if kind is not None and delivered:
            model_firing, model_last = kind == "firing", now
            state = {"state": "firing" if model_firing else "ok", "last_sent": now}
