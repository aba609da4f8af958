"""What an alert says, and its three encodings: e-mail text, JSON, Slack.

An alert carries the project, rule, sync, run id, status, a one-line summary and counts;
never a row's values, a rejection reason or an error message (those can quote a person's
data: the run's page and ``conn runs`` show them). Every text is passed through
:func:`conn.secrets.redact` on the way out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from conn.secrets import redact, redact_obj

#: ``firing``: the rule started firing (or fires again after its cooldown);
#: ``resolved``: it stopped; ``test``: ``conn alerts test``.
KINDS = ("firing", "resolved", "test")
#: The report counts an alert carries.
COUNTS = ("rows_read", "consent_denied", "inserted", "updated", "deleted", "unchanged",
          "rejected", "pending", "seconds")


@dataclass(frozen=True)
class Alert:
    """One notice about one rule and one sync."""

    kind: str
    rule: str
    sync: str
    summary: str
    project: str = ""
    run_id: str | None = None
    status: str | None = None
    link: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        word = {"firing": "ALERT", "resolved": "RESOLVED", "test": "TEST"}[self.kind]
        run = f" run {self.run_id}" if self.run_id else ""
        return redact(f"[conn] {word} {self.rule}: sync {self.sync}{run}")

    def text(self) -> str:
        """The plain-text body (e-mail)."""
        lines = [self.subject, "", self.summary, ""]
        if self.kind == "resolved":
            lines[2:2] = ["The rule no longer fires for this sync."]
        if self.project:
            lines.append(f"project: {self.project}")
        lines += [f"sync: {self.sync}", f"rule: {self.rule}"]
        if self.run_id:
            lines.append(f"run: {self.run_id} ({self.status})")
        lines.append("at: " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at)))
        lines += [f"{k}: {v}" for k, v in self.counts.items()]
        if self.link:
            lines.append(f"details: {self.link}")
        return redact("\n".join(lines) + "\n")

    def payload(self) -> dict[str, Any]:
        """The JSON body of a generic webhook."""
        return redact_obj({
            "kind": self.kind, "rule": self.rule, "sync": self.sync,
            "project": self.project, "run_id": self.run_id, "status": self.status,
            "summary": self.summary, "counts": self.counts, "figures": self.figures,
            "link": self.link,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        })

    def slack(self) -> dict[str, Any]:
        """A Slack incoming-webhook body (``text`` with Slack's link markup)."""
        icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:",
                "test": ":information_source:"}[self.kind]
        head = self.subject.removeprefix("[conn] ")
        if self.link:
            head = f"<{self.link}|{head}>"
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        body = f"{icon} {head}\n{self.summary}" + (f"\n{counts}" if counts else "")
        return {"text": redact(body)}


def counts_of(report: dict[str, Any]) -> dict[str, Any]:
    """The counts of a run report an alert may carry (:data:`COUNTS`)."""
    return {k: report[k] for k in COUNTS if isinstance(report.get(k), int | float)}
