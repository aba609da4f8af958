"""Whether a rule fires for one sync's run: pure functions of the run's report and the
sync's past runs (``docs/alerts.md`` states each rule; the tests hold them to it).

* ``failed``: the run's status is ``failed``.
* ``rejected_share``: ``rejected / (inserted + updated + deleted + rejected)`` is above
  ``above`` (no row sent or rejected: it does not fire).
* ``consent_withheld_share``: ``consent_denied / rows_read`` is above ``above`` (no row
  read: it does not fire).
* ``volume``: with ``m`` the median of the metric over the last ``window`` runs of the
  sync that finished ``ok`` or ``rejected`` and ``MAD`` the median of their absolute
  deviations from ``m``, the band is ``m +- w`` where ``w`` is the larger of
  ``mad * MAD`` and ``percent / 100 * m`` (those given); the rule fires when this run's
  value is outside the band (strictly). Fewer than ``min_runs`` such runs, or a run that
  did not finish ``ok``/``rejected``: not evaluated.

``lag`` rules are not judged on a run: :mod:`conn.alerts.lag` judges them while the
sync is followed.

Exact arithmetic (:class:`fractions.Fraction`): a value on the band's edge does not fire,
whatever the floating-point rounding of ``mad`` or ``percent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from conn.config.alerts import Rule

#: Run statuses that count as a finished run for the volume baseline.
FINISHED = ("ok", "rejected")
#: Statuses that say nothing about the sync's health (a stop asked for, a preview, a
#: paused sync).
SILENT = ("interrupted", "dry_run", "running", "paused")


@dataclass(frozen=True)
class Verdict:
    """A rule's answer for one run: ``firing`` (None: not evaluated, the rule's state is
    kept), a one-line ``summary`` and the counts behind it."""

    firing: bool | None
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)


def _n(report: dict[str, Any], key: str) -> int:
    v = report.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def metric(report: dict[str, Any], name: str) -> int:
    """A run's ``rows_sent`` (inserted + updated + deleted) or ``rows_read``."""
    if name == "rows_read":
        return _n(report, "rows_read")
    return _n(report, "inserted") + _n(report, "updated") + _n(report, "deleted")


def median(values: list[Fraction]) -> Fraction:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def volume_band(values: list[int], mad: float | None, percent: float | None
                ) -> tuple[Fraction, Fraction, Fraction]:
    """``(median, low, high)`` of the band around past ``values`` (see the module)."""
    xs = [Fraction(v) for v in values]
    m = median(xs)
    widths = []
    if mad is not None:
        widths.append(Fraction(mad) * median([abs(x - m) for x in xs]))
    if percent is not None:
        widths.append(Fraction(percent) / 100 * abs(m))
    w = max(widths) if widths else Fraction(0)
    return m, m - w, m + w


def baseline(history: list[dict[str, Any]], run_id: str, window: int) -> list[dict[str, Any]]:
    """The reports of the last ``window`` finished runs before ``run_id`` (``history``:
    run-history rows, newest first, as :meth:`StateStore.runs` returns them)."""
    out = []
    for row in history:
        rep = row.get("report") or {}
        if row.get("run_id") == run_id or row.get("status", rep.get("status")) not in FINISHED:
            continue
        out.append(rep or row)
        if len(out) == window:
            break
    return out


def evaluate(rule: Rule, report: dict[str, Any], history: list[dict[str, Any]]) -> Verdict:
    """``rule`` for one sync's run report (``SyncReport.as_dict()``); ``history``: the
    sync's run-history rows, newest first (may include this run: it is skipped)."""
    status = str(report.get("status", ""))
    if status in SILENT:
        return Verdict(None, f"run {status}")
    if rule.when == "lag":  # judged while the sync is followed (conn.alerts.lag)
        return Verdict(None, "a lag rule is judged while the sync is followed")
    if rule.when == "failed":
        failed = status == "failed"
        figures = {"status": status, "error_type": report.get("error_type")}
        return Verdict(failed, f"run {status}" + (f" ({report['error_type']})"
                                                   if failed and report.get("error_type")
                                                   else ""), figures)
    if rule.when in ("rejected_share", "consent_withheld_share"):
        return _share(rule, report)
    return _volume(rule, report, history)


def _share(rule: Rule, report: dict[str, Any]) -> Verdict:
    assert rule.above is not None
    if rule.when == "rejected_share":
        part, label = _n(report, "rejected"), "rejected"
        whole = metric(report, "rows_sent") + part
        of = "rows sent or rejected"
    else:
        part, label = _n(report, "consent_denied"), "withheld by consent"
        whole, of = _n(report, "rows_read"), "rows read"
    share = Fraction(part, whole) if whole else Fraction(0)
    firing = share > Fraction(rule.above)
    return Verdict(firing, f"{part} of {whole} {of} {label} ({float(share):.1%}; "
                           f"threshold {rule.above:.1%})",
                   {label.split()[0]: part, "of": whole, "share": round(float(share), 6),
                    "threshold": rule.above})


def _volume(rule: Rule, report: dict[str, Any], history: list[dict[str, Any]]) -> Verdict:
    if str(report.get("status")) not in FINISHED:
        return Verdict(None, f"run {report.get('status')}: volume not compared")
    past = baseline(history, str(report.get("run_id", "")), rule.window)
    if len(past) < rule.min_runs:
        return Verdict(None, f"{len(past)} past finished run(s), {rule.min_runs} needed")
    value = metric(report, rule.metric)
    m, low, high = volume_band([metric(p, rule.metric) for p in past], rule.mad, rule.percent)
    firing = value < low or value > high
    return Verdict(firing, f"{rule.metric} {value} vs median {float(m):g} of the last "
                           f"{len(past)} runs (expected {float(low):g} to {float(high):g})",
                   {rule.metric: value, "median": float(m), "low": float(low),
                    "high": float(high), "runs": len(past)})
