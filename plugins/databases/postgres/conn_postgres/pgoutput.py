"""Decoding PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

The message formats are PostgreSQL's "Logical Replication Message Formats"
(https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
Begin, Commit, Relation, Insert, Update, Delete and Truncate are decoded; Origin, Type
and logical decoding messages are skipped. Column values arrive as PostgreSQL's text
output; :class:`ChangeBuffer` keeps the changes' messages, whose values are read into
Arrow for all the changes of a batch at once when it is handed out
(:mod:`conn_postgres.pgtuples`), and :mod:`conn_postgres.pgtext` turns each column into
its type in one go.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conn_postgres import pgtuples

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
    """Changes of one table, undecoded: each change's message and where in it the tuple
    to read starts (the new row; a delete's old row), with its operation and commit time
    (seconds since the epoch). :meth:`text_columns` decodes them all at once."""

    columns: list[str]
    key_flags: list[bool] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    commit_times: list[float] = field(default_factory=list)
    #: Rows of deletes that carry only the key columns (the others are null).
    key_only: list[int] = field(default_factory=list)
    #: The old row of updates that sent it (REPLICA IDENTITY FULL), by row: where an
    #: unchanged TOAST value of the new row is read from.
    olds: dict[int, list[Any]] = field(default_factory=dict)
    #: (row, column) of values the server did not send (unchanged TOAST of an update
    #: without the old row): null in :meth:`text_columns` until read from the table.
    unchanged: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.operations)

    def split(self, n: int) -> ChangeBuffer:
        """Take out the first ``n`` changes (the rest stays)."""
        out = ChangeBuffer(self.columns, self.key_flags, self.payloads[:n], self.starts[:n],
                           self.operations[:n], self.commit_times[:n],
                           [r for r in self.key_only if r < n],
                           {r: v for r, v in self.olds.items() if r < n})
        del self.payloads[:n], self.starts[:n], self.operations[:n], self.commit_times[:n]
        self.key_only = [r - n for r in self.key_only if r >= n]
        self.olds = {r - n: v for r, v in self.olds.items() if r >= n}
        return out

    def text_columns(self) -> list[pa.Array]:
        """Every column's text values (string arrays), decoded together
        (:mod:`conn_postgres.pgtuples`); fills :attr:`unchanged`."""
        arrays, kinds = pgtuples.text_columns(self.payloads, self.starts, len(self.columns))
        if self.key_only:
            # A delete by key: only the key columns were sent.
            mask = np.zeros(len(self), dtype=bool)
            mask[self.key_only] = True
            nulls = pa.array(mask)
            arrays = [a if key else pc.if_else(nulls, pa.scalar(None, a.type), a)
                      for a, key in zip(arrays, self.key_flags, strict=True)]
        self.unchanged = []
        rows, cols = np.nonzero(kinds == pgtuples.UNCHANGED_TOAST)
        if len(rows):
            patched: dict[int, list[Any]] = {}
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                old = self.olds.get(r)
                if old is not None and old[c] is not UNCHANGED:
                    patched.setdefault(c, arrays[c].to_pylist())[r] = old[c]
                else:
                    self.unchanged.append((r, c))
            for c, values in patched.items():
                arrays[c] = pa.array(values, arrays[c].type)
        return arrays


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
        self.committed -= n
        return buf.split(n)

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
                self.buffer = ChangeBuffer(cols, keys)
            self.buffer.key_flags = keys

    def _change(self, kind: bytes, payload: bytes) -> None:
        (oid,) = _U32.unpack_from(payload, 1)
        rel = self.relations.get(oid)
        if rel is None or rel.name != self.relation_name or rel.namespace != self.namespace:
            return
        buf = self.buffer
        assert buf is not None
        at = 5
        ident = payload[at:at + 1]
        if kind == b"D":
            # The old row: its key columns ('K') or all of it ('O'), read with the rest.
            if ident == b"K":
                buf.key_only.append(len(buf))
            buf.starts.append(at + 1)
            op = "delete"
        else:
            if ident in (b"K", b"O"):
                old, at = _tuple(payload, at + 1)
                if ident == b"O":
                    buf.olds[len(buf)] = old
            assert payload[at:at + 1] == b"N"
            buf.starts.append(at + 1)
            op = "insert" if kind == b"I" else "update"
        buf.payloads.append(payload)
        buf.operations.append(op)
        buf.commit_times.append(self._commit_time)


class SchemaChanged(Exception):
    """The followed table's columns changed (ALTER TABLE): the stream must restart with
    the new schema."""
