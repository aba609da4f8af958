"""The splink matcher on a synthetic population with planted duplicates (typos in
names and addresses): every planted pair scores at least the threshold, no pair of
distinct people does; blocking limits the pairs compared."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conn.config.profiles import MatcherSpec
from conn.errors import ConfigError
from conn.profiles.matching import PAIRS
from conn_matcher_splink.matcher import SplinkMatcher

from tests.people import population

THRESHOLD = 0.9


def table(rows: list[dict]) -> pa.Table:
    return pa.table({"rkey": pa.array([r["uid"] for r in rows], pa.uint64()),
                     **{c: pa.array([r[c] for r in rows], pa.string())
                        for c in ("name", "address", "city")}})


def scored(out: pa.Table) -> dict[tuple[int, int], float]:
    return {(min(a, b), max(a, b)): s for a, b, s in zip(
        out.column("record_a").to_pylist(), out.column("record_b").to_pylist(),
        out.column("score").to_pylist(), strict=True)}


@pytest.mark.parametrize("training", ["fixed", pytest.param("em", marks=pytest.mark.slow)])
def test_planted_duplicates_found_distinct_people_not(training: str) -> None:
    rows, planted = population()
    spec = MatcherSpec("splink", THRESHOLD, ("name", "address", "city"), (("city",),),
                       {"training": training})
    out = SplinkMatcher(spec).pairs(table(rows))
    assert out.schema == PAIRS
    got = scored(out)
    assert {p: got.get(p, 0.0) >= THRESHOLD for p in planted} == dict.fromkeys(planted, True)
    above = {p for p, s in got.items() if s >= THRESHOLD}
    assert above == set(planted)
    # Blocking on city: only same-city pairs were compared.
    city = {r["uid"]: r["city"] for r in rows}
    assert all(city[a] == city[b] for a, b in got)


def test_blocking_by_expression_and_comparison_kinds() -> None:
    rows, planted = population(n=40, dupes=6, seed=3)
    spec = MatcherSpec("splink", THRESHOLD, ("name", "address", "city"),
                       (("substr(name, 1, 1)",),),
                       {"comparisons": {"city": "exact", "address": "levenshtein"}})
    got = scored(SplinkMatcher(spec).pairs(table(rows)))
    # Typos never touch the first letter, so the planted pairs share a block.
    assert {p for p, s in got.items() if s >= THRESHOLD} == set(planted)
    first = {r["uid"]: r["name"][0] for r in rows}
    assert all(first[a] == first[b] for a, b in got)


def test_em_without_blocking_rules_is_a_config_error() -> None:
    rows, _ = population(n=10, dupes=2)
    spec = MatcherSpec("splink", THRESHOLD, ("name",), (), {"training": "em"})
    with pytest.raises(ConfigError) as e:
        SplinkMatcher(spec).pairs(table(rows))
    assert e.value.path == "options.training"


def test_fewer_than_two_records_give_no_pairs() -> None:
    rows, _ = population(n=1, dupes=0)
    spec = MatcherSpec("splink", THRESHOLD, ("name",))
    assert SplinkMatcher(spec).pairs(table(rows)).num_rows == 0


def test_entry_point_registers_the_matcher() -> None:
    from conn.plugins import Registry

    reg = Registry()
    assert reg.matcher("splink") is SplinkMatcher
