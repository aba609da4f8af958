"""The uplift statistics of ``conn experiments report`` (docs/experiments.md) against a
reference written from the docs with the standard library only; and their behaviour as a
test: a planted uplift is found, and a null one is found only at the stated rate alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conn.experiments.uplift import FISHER, Z_TEST, Arm, compare
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.experiments.reference import expected_min, fisher_two_sided, uplift


@st.composite
def arms(draw):
    n_t = draw(st.integers(1, 5000))
    n_h = draw(st.integers(1, 2000))
    return n_t, draw(st.integers(0, n_t)), n_h, draw(st.integers(0, n_h))


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@settings(max_examples=120, deadline=None)
@given(arms(), st.sampled_from((0.01, 0.05, 0.1)))
def test_compare_matches_the_reference(counts, alpha):
    n_t, x_t, n_h, x_h = counts
    got = compare(Arm(n_t, x_t), Arm(n_h, x_h), alpha).as_dict()
    ref = uplift(n_t, x_t, n_h, x_h, alpha)
    assert close(got["treatment"]["rate"], ref["rate_treatment"])
    assert close(got["holdout"]["rate"], ref["rate_holdout"])
    assert close(got["absolute"], ref["absolute"])
    assert close(got["absolute_ci"][0], ref["absolute_low"])
    assert close(got["absolute_ci"][1], ref["absolute_high"])
    if "relative" in ref:
        assert close(got["relative"], ref["relative"])
        assert close(got["relative_ci"][0], ref["relative_low"])
        assert close(got["relative_ci"][1], ref["relative_high"])
    else:
        assert got["relative"] is None and got["relative_ci"] is None
    if expected_min(n_t, x_t, n_h, x_h) < 5:
        assert got["method"] == FISHER
        assert math.isclose(got["p_value"], fisher_two_sided(n_t, x_t, n_h, x_h),
                            rel_tol=1e-6, abs_tol=1e-12)
    else:
        assert got["method"] == Z_TEST
        assert math.isclose(got["p_value"], ref["p_value"], rel_tol=1e-6, abs_tol=1e-12)
    assert got["significant"] == (got["p_value"] < alpha)


def test_an_empty_arm_gives_no_comparison_and_bad_counts_are_refused():
    r = compare(Arm(10, 3), Arm(0, 0))
    assert r.p_value is None and r.absolute is None and not r.significant
    with pytest.raises(ValueError):
        compare(Arm(10, 11), Arm(10, 1))


def _simulate(rng, runs, n_t, n_h, p_t, p_h, alpha):
    x_t = rng.binomial(n_t, p_t, size=runs)
    x_h = rng.binomial(n_h, p_h, size=runs)
    return [compare(Arm(n_t, int(a)), Arm(n_h, int(b)), alpha) for a, b in
            zip(x_t, x_h, strict=True)]


def test_a_null_uplift_is_found_at_the_stated_rate_alpha():
    # 400 experiments with no effect (90/10 split, 12 % conversion in both arms): the
    # count found significant is Binomial(400, alpha); its 1e-6 band must hold it.
    rng = np.random.default_rng(20261206)
    runs, alpha = 400, 0.05
    found = sum(r.significant for r in _simulate(rng, runs, 9000, 1000, 0.12, 0.12, alpha))
    lo, hi = stats.binom.interval(1 - 1e-6, runs, alpha)
    assert lo <= found <= hi, found
    # and the interval covers the true difference (0) in about 1 - alpha of them
    rng = np.random.default_rng(7)
    cover = sum(r.absolute_ci[0] <= 0 <= r.absolute_ci[1]
                for r in _simulate(rng, runs, 9000, 1000, 0.12, 0.12, alpha))
    lo, hi = stats.binom.interval(1 - 1e-6, runs, 1 - alpha)
    assert lo <= cover <= hi, cover


def test_a_planted_uplift_is_found():
    # 12 % -> 15 % with 9,000 treated and 1,000 held out: power ~0.8 at alpha 0.05, so
    # at least 65 % of 200 simulated experiments must find it (binomial 1e-6 margin),
    # and the planted 3 points must lie inside most intervals.
    rng = np.random.default_rng(42)
    results = _simulate(rng, 200, 9000, 1000, 0.15, 0.12, 0.05)
    found = sum(r.significant for r in results)
    assert found >= 130, found
    assert all(r.absolute > 0 for r in results if r.significant)
    inside = sum(r.absolute_ci[0] <= 0.03 <= r.absolute_ci[1] for r in results)
    assert inside >= 170, inside
