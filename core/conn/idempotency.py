"""Idempotency keys: one per record sent, derived from what is sent.

A record's key is the SHA-256 (first 32 hex digits) of the sync, the object, the
operation, the record's primary key, the payload hash the destination acknowledged
before (``0`` for a first delivery) and the new payload hash (``0`` for a delete). So:

* every retry of a request, every later run and every run after a crash sends an
  unchanged record under the same key (the state still holds the same acknowledged
  hash for it until the destination acknowledges it);
* every new change of a record gets a new key, also when a value returns to an earlier
  one (A -> B -> A: the acknowledged hash differs each time), except when a record
  goes through the very same change again (A -> B, B -> A, A -> B), whose third step
  repeats the first one's key;
* a request's key (:func:`request_key`) is derived from its records' keys in order, so
  a request re-sent with the same records carries the same key.

Destinations send them wherever the vendor accepts one (``webhook-id``,
``Idempotency-Key`` headers, message or event ids).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

#: Hex digits kept of each SHA-256 (128 bits).
DIGITS = 32


def record_keys(sync: str, obj: str, operation: str, keys: pa.Array, previous: pa.Array,
                hashes: pa.Array | None) -> pa.Array:
    """The idempotency key of each record (see the module docstring), vectorised."""
    from conn.digests import sha256_hex

    n = len(keys)
    prefix = f"{sync}\x1f{obj}\x1f{operation}"
    prev = pc.cast(previous.fill_null(0), pa.string())
    new = (pc.cast(hashes.fill_null(0), pa.string()) if hashes is not None
           else pa.array(["0"] * n, pa.string()))
    text = pc.binary_join_element_wise(pa.array([prefix] * n, pa.string()),
                                       keys.cast(pa.string()).fill_null(""), prev, new,
                                       "\x1f")
    return pc.utf8_slice_codeunits(sha256_hex(text), 0, DIGITS)


def request_key(record_keys: list[str]) -> str:
    """The idempotency key of a request carrying records with these keys, in order."""
    return hashlib.sha256("\x1f".join(record_keys).encode()).hexdigest()[:DIGITS]
