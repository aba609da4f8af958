"""Decoding PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

The message formats are PostgreSQL's "Logical Replication Message Formats"
(https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
Begin, Commit, Relation, Insert, Update, Delete and Truncate are decoded; Origin, Type
and logical decoding messages are skipped. Column values arrive as PostgreSQL's text
output; :class:`ChangeBuffer` collects them per column, and :mod:`conn_postgres.pgtext`
turns each column into Arrow in one go when a batch is handed out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

#: Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
PG_EPOCH_US = 946_684_800 * 1_000_000
#: A column value the server did not send: an unchanged TOASTed value of an update.
UNCHANGED = object()

_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">bQQq")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")


@dataclass
class Relation:
    """A table as the Relation message describes it: namespace, name, replica identity
    (``d`` default/primary key, ``f`` full, ``i`` index, ``n`` nothing) and columns."""

    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: list[str]
    type_oids: list[int]
    key_flags: list[bool]


@dataclass
class ChangeBuffer:
    """Decoded changes of one table, column by column (text values), with each change's
    operation and commit time (seconds since the epoch)."""

    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    commit_times: list[float] = field(default_factory=list)
    #: (row, column) of values the server did not send (unchanged TOAST of an update
    #: without the old row): null here until read from the table.
    unchanged: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.columns]

    def __len__(self) -> int:
        return len(self.operations)


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    """An LSN from PostgreSQL's text form."""
    hi, lo = str(text).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _cstring(buf: bytes, at: int) -> tuple[str, int]:
    end = buf.index(b"\0", at)
    return buf[at:end].decode("utf-8"), end + 1


def _tuple(buf: bytes, at: int) -> tuple[list[Any], int]:
    """TupleData: text values, None for NULL, :data:`UNCHANGED` for an unsent TOAST."""
    (n,) = _U16.unpack_from(buf, at)
    at += 2
    out: list[Any] = []
    for _ in range(n):
        kind = buf[at]
        at += 1
        if kind == 0x74:  # 't': text
            (length,) = _U32.unpack_from(buf, at)
            at += 4
            out.append(buf[at:at + length].decode("utf-8"))
            at += length
        elif kind == 0x6E:  # 'n': null
            out.append(None)
        elif kind == 0x75:  # 'u': unchanged TOAST value, not sent
            out.append(UNCHANGED)
        else:
            raise ValueError(f"pgoutput: unknown tuple value kind {chr(kind)!r} "
                             "(binary mode is not used by conn)")
    return out, at


class Decoder:
    """Decodes a stream of pgoutput messages. Changes of ``relation_name`` (in
    ``namespace``) go to its :class:`ChangeBuffer`; other tables of the publication are
    skipped. :attr:`commit_end` is the end LSN of the last complete transaction."""

    def __init__(self, namespace: str, relation_name: str) -> None:
        self.namespace, self.relation_name = namespace, relation_name
        self.relations: dict[int, Relation] = {}
        self.buffer: ChangeBuffer | None = None
        #: Rows of the buffer that belong to committed transactions.
        self.committed = 0
        self.commit_end = 0
        self.truncated = False
        self._commit_time = 0.0
        #: Rows whose new tuple lacks unchanged TOAST values (row index, column index).
        self.unchanged: list[tuple[int, int]] = []

    def relation(self) -> Relation | None:
        """The followed table's last Relation message, if one came."""
        for rel in self.relations.values():
            if rel.namespace == self.namespace and rel.name == self.relation_name:
                return rel
        return None

    def take(self, committed_only: bool = True) -> ChangeBuffer | None:
        """Hand out the buffered changes (of committed transactions only, by default)."""
        buf = self.buffer
        if buf is None or not len(buf):
            return None
        n = self.committed if committed_only else len(buf)
        if not n:
            return None
        out = ChangeBuffer(buf.columns)
        out.values = [col[:n] for col in buf.values]
        out.operations, out.commit_times = buf.operations[:n], buf.commit_times[:n]
        buf.values = [col[n:] for col in buf.values]
        del buf.operations[:n], buf.commit_times[:n]
        self.committed -= n
        out.unchanged = [(r, c) for r, c in self.unchanged if r < n]
        self.unchanged = [(r - n, c) for r, c in self.unchanged if r >= n]
        return out

    def feed(self, payload: bytes) -> None:
        """Decode one message."""
        kind = payload[:1]
        if kind == b"B":
            _, ts, _ = _BEGIN.unpack_from(payload, 1)
            self._commit_time = (ts + PG_EPOCH_US) / 1e6
        elif kind == b"C":
            _, _, end_lsn, _ = _COMMIT.unpack_from(payload, 1)
            self.commit_end = end_lsn
            if self.buffer is not None:
                self.committed = len(self.buffer)
        elif kind == b"R":
            self._relation(payload)
        elif kind in (b"I", b"U", b"D"):
            self._change(kind, payload)
        elif kind == b"T":
            (n,) = _U32.unpack_from(payload, 1)
            oids = [_U32.unpack_from(payload, 6 + 4 * i)[0] for i in range(n)]
            rel = self.relation()
            if rel is not None and rel.oid in oids:
                self.truncated = True
        # 'O' origin, 'Y' type, 'M' message: nothing to do

    def _relation(self, payload: bytes) -> None:
        (oid,) = _U32.unpack_from(payload, 1)
        ns, at = _cstring(payload, 5)
        name, at = _cstring(payload, at)
        ident = chr(payload[at])
        (ncols,) = _U16.unpack_from(payload, at + 1)
        at += 3
        cols, types, keys = [], [], []
        for _ in range(ncols):
            flags = payload[at]
            col, at = _cstring(payload, at + 1)
            (type_oid,) = _U32.unpack_from(payload, at)
            at += 8  # type oid, type modifier
            cols.append(col)
            types.append(type_oid)
            keys.append(bool(flags & 1))
        rel = Relation(oid, ns or "pg_catalog", name, ident, cols, types, keys)
        self.relations[oid] = rel
        if ns == self.namespace and name == self.relation_name:
            if self.buffer is not None and self.buffer.columns != cols:
                raise SchemaChanged(f"table {ns}.{name} changed its columns while it was "
                                    f"being followed (now {cols})")
            if self.buffer is None:
                self.buffer = ChangeBuffer(cols)

    def _change(self, kind: bytes, payload: bytes) -> None:
        (oid,) = _U32.unpack_from(payload, 1)
        rel = self.relations.get(oid)
        if rel is None or rel.name != self.relation_name or rel.namespace != self.namespace:
            return
        buf = self.buffer
        assert buf is not None
        at = 5
        old: list[Any] | None = None
        if payload[at:at + 1] in (b"K", b"O"):
            old, at = _tuple(payload, at + 1)
        if kind == b"D":
            row, op = old or [None] * len(buf.columns), "delete"
            if payload[5:6] == b"K":
                # Only the key columns were sent: the others are null.
                row = [v if rel.key_flags[i] else None for i, v in enumerate(row)]
        else:
            assert payload[at:at + 1] == b"N"
            row, _ = _tuple(payload, at + 1)
            op = "insert" if kind == b"I" else "update"
        for i, v in enumerate(row):
            if v is UNCHANGED:
                if old is not None and old[i] is not UNCHANGED and payload[5:6] == b"O":
                    row[i] = old[i]
                else:
                    row[i] = None
                    self.unchanged.append((len(buf), i))
        for col, v in zip(buf.values, row, strict=True):
            col.append(v)
        buf.operations.append(op)
        buf.commit_times.append(self._commit_time)


class SchemaChanged(Exception):
    """The followed table's columns changed (ALTER TABLE): the stream must restart with
    the new schema."""
