"""The destination conformance suite on an append-only object (a message or event
stream declares no upsert): its writes use the object's own writing operation. Before,
every write check sent ``upsert`` and the runtime refused it for such an object."""

from __future__ import annotations

from typing import Any, ClassVar

from conn.destination import Capabilities, Destination, ObjectInfo, WriteRequest, WriteResult
from conn.testing.conformance import SuiteContext, destination_suite

STORE: list[dict[str, Any]] = []


class AppendOnly(Destination):
    """Appends rows to :data:`STORE`; rejects rows whose ``note`` is ``refuse``."""

    name: ClassVar[str] = "append_only"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "additionalProperties": False,
        "properties": {"fail": {"type": "boolean"}}}

    def objects(self) -> list[ObjectInfo]:
        caps = Capabilities(batch_size=3, modes=frozenset({"append"}))
        fields = {"type": "object", "properties": {"id": {"type": "string"},
                                                   "note": {"type": ["string", "null"]}}}
        return [ObjectInfo("log", fields, ("id",), caps)]

    def check(self) -> None:
        from conn.errors import CheckFailed

        if self.config.get("fail"):
            raise CheckFailed("append_only: refused")

    def write_batch(self, request: WriteRequest) -> WriteResult:
        from conn.destination import Rejection
        from conn.errors import ConnError

        assert request.operation == "append", request.operation
        if self.config.get("fail"):
            raise ConnError("refused")
        rows = request.to_pylist()
        bad = [i for i, r in enumerate(rows) if r.get("note") == "refuse"]
        STORE.extend(r for i, r in enumerate(rows) if i not in bad)
        return WriteResult(rejected=[Rejection(i, "refused note") for i in bad])


def read_back(ctx: SuiteContext, dest: Destination, obj: str) -> list[dict[str, Any]]:
    return list(STORE)


TestAppendOnlyConformance = destination_suite(
    AppendOnly, config={}, object="log", read_back=read_back,
    sample_records=[{"id": "a", "note": "x"}, {"id": "b", "note": "y"}],
    rejected_record={"id": "c", "note": "refuse"}, bad_config={"fail": "no"},
    failing_config={"fail": True})
