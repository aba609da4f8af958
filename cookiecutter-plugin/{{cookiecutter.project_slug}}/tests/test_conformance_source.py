"""conn's conformance suite for the {{ cookiecutter.type_name }} source."""

from __future__ import annotations

from pathlib import Path

from conn.testing.conformance import source_suite
from conn.testing.harness import read_all

from {{ cookiecutter.package_name }}.source import {{ cookiecutter.class_name }}

DATA = Path(__file__).parent / "data" / "people.jsonl"

Test{{ cookiecutter.class_name }}Conformance = source_suite(
    {{ cookiecutter.class_name }},
    config={"path": str(DATA), "cursor": "updated_at"},
    stream="people",
    expected_rows=[{"id": i, "email": f"person{i}@example.com"} for i in range(1, 13)],
    bad_config={"path": "", "primary_key": []},
    failing_config={"path": "missing.jsonl"},
    batch_rows=5,
)


def test_incremental_reads_only_new_rows(tmp_path: Path) -> None:
    """Rows above the stored cursor are the only ones read again."""
    path = tmp_path / "people.jsonl"
    lines = DATA.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:8]), encoding="utf-8")
    config = {"path": str(path), "cursor": "updated_at"}
    with {{ cookiecutter.class_name }}(config) as src:
        first, states = read_all(src, "people")
    assert first.num_rows == 8 and len(states) == 1
    path.write_text("".join(lines), encoding="utf-8")
    with {{ cookiecutter.class_name }}(config) as src:
        second, _ = read_all(src, "people", state=states[-1])
    assert second.column("id").to_pylist() == [9, 10, 11, 12]
