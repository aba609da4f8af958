"""Plain-Python references written from docs/experiments.md, independently of conn's
code: who is held out, and the uplift statistics of a report."""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from fractions import Fraction


def is_held_out(key: str, percent: float | int | str, salt: str) -> bool:
    """The first 64 bits of SHA-256(salt U+001F key), big-endian, below percent % of
    2^64 (floor)."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big")
    bound = math.floor(Fraction(Decimal(str(percent))) * 2**64 / 100)
    return bucket < bound


def uplift(n_t: int, x_t: int, n_h: int, x_h: int, alpha: float = 0.05) -> dict[str, float]:
    """Two-proportion comparison as the docs state it: rates, absolute uplift with a Wald
    (unpooled) interval, relative uplift with the log risk-ratio (Katz) interval, and the
    pooled two-sided z-test's p-value, computed with the standard library only."""
    from statistics import NormalDist

    nd = NormalDist()
    z = nd.inv_cdf(1 - alpha / 2)
    p_t, p_h = x_t / n_t, x_h / n_h
    diff = p_t - p_h
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h)
    pooled = (x_t + x_h) / (n_t + n_h)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_h))
    p_value = 2 * (1 - nd.cdf(abs(diff) / se0)) if se0 > 0 else 1.0
    out = {"rate_treatment": p_t, "rate_holdout": p_h, "absolute": diff,
           "absolute_low": diff - z * se, "absolute_high": diff + z * se,
           "p_value": p_value}
    if x_t > 0 and x_h > 0:
        rr = p_t / p_h
        se_log = math.sqrt(1 / x_t - 1 / n_t + 1 / x_h - 1 / n_h)
        out.update(relative=rr - 1, relative_low=math.exp(math.log(rr) - z * se_log) - 1,
                   relative_high=math.exp(math.log(rr) + z * se_log) - 1)
    return out


def fisher_two_sided(n_t: int, x_t: int, n_h: int, x_h: int) -> float:
    """Fisher's exact test, two-sided: the probability, with the margins fixed, of every
    table no more likely than the one observed (hypergeometric, exact integers)."""
    from math import comb

    total, pos = n_t + n_h, x_t + x_h
    denom = comb(total, pos)

    def prob(a: int) -> Fraction:
        return Fraction(comb(n_t, a) * comb(n_h, pos - a), denom)

    observed = prob(x_t)
    lo, hi = max(0, pos - n_h), min(n_t, pos)
    # A relative tolerance, so tables as likely as the observed one up to rounding count.
    limit = observed * (1 + Fraction(1, 10**7))
    return float(sum(p for a in range(lo, hi + 1) if (p := prob(a)) <= limit))


def expected_min(n_t: int, x_t: int, n_h: int, x_h: int) -> float:
    total, pos = n_t + n_h, x_t + x_h
    return min(n * k / total for n in (n_t, n_h) for k in (pos, total - pos))
