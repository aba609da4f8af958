"""Uplift of a holdout experiment: the outcome rate of the treatment arm against the
holdout arm, with a confidence interval and a p-value (scipy.stats).

The outcome is binary per member (converted or not), so each arm is a binomial sample and
the question is a difference of two proportions:

* **p-value**: the two-sided two-proportion z-test with the pooled rate (the standard
  test for two independent binomial samples; with the arms in the thousands its normal
  approximation is accurate). When an expected cell count is below 5 the approximation
  is not trusted and Fisher's exact test (``scipy.stats.fisher_exact``) is used instead;
  ``method`` says which.
* **absolute uplift** ``rate_treatment - rate_holdout`` with the Wald interval (unpooled
  standard error);
* **relative uplift** ``rate_treatment / rate_holdout - 1`` with the log risk-ratio
  (Katz) interval; undefined (None) when an arm has no outcome.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from conn.errors import ConnError

Z_TEST = "two-proportion z-test (pooled, two-sided)"
FISHER = "Fisher's exact test (two-sided; an expected count was below 5)"


@dataclass(frozen=True)
class Arm:
    """One arm: ``members`` and how many of them had the outcome (``converted``)."""

    members: int
    converted: int

    @property
    def rate(self) -> float | None:
        return self.converted / self.members if self.members else None


@dataclass(frozen=True)
class Uplift:
    """The comparison of two arms at confidence ``1 - alpha``."""

    treatment: Arm
    holdout: Arm
    alpha: float
    absolute: float | None
    absolute_ci: tuple[float, float] | None
    relative: float | None
    relative_ci: tuple[float, float] | None
    p_value: float | None
    method: str

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for arm in ("treatment", "holdout"):
            d[arm]["rate"] = getattr(self, arm).rate
        for ci in ("absolute_ci", "relative_ci"):
            d[ci] = list(d[ci]) if d[ci] is not None else None
        d["confidence"] = 1 - self.alpha
        d["significant"] = self.significant
        return d


def compare(treatment: Arm, holdout: Arm, alpha: float = 0.05) -> Uplift:
    """Compare the arms (see the module's docstring for the methods)."""
    try:
        from scipy import stats
    except ImportError:
        raise ConnError("the uplift statistics need scipy: pip install 'conn[experiments]' "
                        "(or pip install scipy)") from None

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    n_t, x_t, n_h, x_h = treatment.members, treatment.converted, holdout.members, \
        holdout.converted
    for arm in (treatment, holdout):
        if not 0 <= arm.converted <= arm.members:
            raise ValueError(f"an arm of {arm.members} members cannot have "
                             f"{arm.converted} outcomes")
    if not n_t or not n_h:
        return Uplift(treatment, holdout, alpha, None, None, None, None, None,
                      "none: an arm has no members")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p_t, p_h = x_t / n_t, x_h / n_h
    diff = p_t - p_h
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h)
    absolute_ci = (diff - z * se, diff + z * se)
    relative = relative_ci = None
    if x_t and x_h:
        ratio = p_t / p_h
        se_log = math.sqrt(1 / x_t - 1 / n_t + 1 / x_h - 1 / n_h)
        relative = ratio - 1
        relative_ci = (math.exp(math.log(ratio) - z * se_log) - 1,
                       math.exp(math.log(ratio) + z * se_log) - 1)
    total, pos = n_t + n_h, x_t + x_h
    expected = [n * k / total for n in (n_t, n_h) for k in (pos, total - pos)]
    if min(expected) < 5:
        table = [[x_t, n_t - x_t], [x_h, n_h - x_h]]
        p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
        method = FISHER
    else:
        pooled = pos / total
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_h))
        p_value = float(2 * stats.norm.sf(abs(diff) / se0))
        method = Z_TEST
    return Uplift(treatment, holdout, alpha, diff, absolute_ci, relative, relative_ci,
                  p_value, method)
