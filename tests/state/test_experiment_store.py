"""Every state backend keeps holdout experiments alike (conn.state.experiments): against
a plain model, members keep their first assignment across runs and re-deliveries; an
archived experiment keeps its members under NAME#N and frees the name."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

pytestmark = pytest.mark.one_planner_path


@pytest.mark.parametrize("seed", range(4))
def test_members_match_a_plain_model(backend, seed):
    _kind, factory = backend
    store = factory()
    exp = store.experiment_store()
    assert exp is not None
    rnd = random.Random(seed)
    exp.begin("e", "sync_a", {"percent": "10", "salt": "s"}, "r0")
    model: dict[str, tuple[str, str]] = {}
    # A key's arm is a function of the key (the hash), so a batch never disagrees on it.
    arm_of = {str(i): rnd.random() < 0.3 for i in range(40)}
    for run in range(5):
        keys = [rnd.choice([None, *map(str, range(40))]) for _ in range(rnd.randint(0, 30))]
        held = [k is not None and arm_of[k] for k in keys]
        new = exp.record("e", f"r{run}", pa.array(keys, pa.string()), pa.array(held))
        before = len(model)
        for k, h in zip(keys, held, strict=True):
            if k is not None and k not in model:
                model[k] = ("holdout" if h else "treatment", f"r{run}")
        assert new == len(model) - before
    again = factory().experiment_store()  # another store on the same state
    assert again is not None
    t = again.members("e").to_pydict()
    got = {k: (a, r) for k, a, r in zip(t["key"], t["arm"], t["run_id"], strict=True)}
    assert got == model
    some = [*sorted(model)[:3], "absent"]
    assert {k: (v["arm"], v["run_id"]) for k, v in again.arms("e", some).items()} == \
        {k: model[k] for k in some if k in model}
    [listed] = again.experiments()
    arms = [a for a, _ in model.values()]
    assert (listed["name"], listed["treatment"], listed["holdout"], listed["ended_at"]) == \
        ("e", arms.count("treatment"), arms.count("holdout"), None)


def test_archive_frees_the_name_and_keeps_the_members(backend):
    _kind, factory = backend
    exp = factory().experiment_store()
    assert exp is not None
    exp.begin("e", "s", {"percent": "10", "salt": "a"}, "r1")
    exp.record("e", "r1", pa.array(["1", "2"]), pa.array([True, False]))
    assert exp.archive("e") == "e#1"
    assert exp.design("e") is None
    exp.begin("e", "s", {"percent": "20", "salt": "a"}, "r2")
    assert exp.design("e")["percent"] == "20"
    assert exp.archive("e") == "e#2"
    exp.begin("e", "s", {"percent": "30", "salt": "a"}, "r3")
    names = {(x["name"], x["ended_at"] is None, x["holdout"]) for x in exp.experiments()}
    assert names == {("e#1", False, 1), ("e#2", False, 0), ("e", True, 0)}
    assert exp.members("e").num_rows == 0
    assert exp.members("e#1").column("key").to_pylist() in (["1", "2"], ["2", "1"])


def test_forget_removes_a_key_from_every_experiment_and_from_the_file(backend, tmp_path):
    kind, factory = backend
    exp = factory().experiment_store()
    assert exp is not None
    # A distinctive key: its bytes must not be found in the file afterwards.
    gone, kept = "zq-forgotten-7731@example.org", "kept@example.org"
    exp.begin("a", "s", {"percent": "10", "salt": "x"}, "r1")
    exp.record("a", "r1", pa.array([gone, kept]), pa.array([True, False]))
    assert exp.archive("a") == "a#1"
    exp.begin("a", "s", {"percent": "20", "salt": "x"}, "r2")
    exp.record("a", "r2", pa.array([gone]), pa.array([False]))
    files = list((tmp_path / ".conn").rglob("experiments.duckdb*"))
    if kind == "duckdb":  # the check below can fail: the key is in the file now
        assert any(gone.encode() in f.read_bytes() for f in files)
    assert exp.forget([gone, "nobody"]) == 2
    for name in ("a", "a#1"):
        assert gone not in exp.members(name).column("key").to_pylist()
    assert exp.members("a#1").column("key").to_pylist() == [kept]
    if kind == "duckdb":
        files = list((tmp_path / ".conn").rglob("experiments.duckdb*"))
        assert files and not any(gone.encode() in f.read_bytes() for f in files)
