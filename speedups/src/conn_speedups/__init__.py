"""Compiled kernels for conn's change planner.

conn works without this package; with it, a sync's planning step hashes rows and looks
keys up several times faster. The hashes are DuckDB's ``hash()`` reproduced over Arrow
buffers: conn verifies each kernel against DuckDB before using it and falls back to
DuckDB when they disagree (see ``conn.state.planner.kernels``). All functions release the GIL.
"""

from conn_speedups._native import (
    API_VERSION,
    classify,
    hash_binary,
    hash_fixed,
    index_add,
    mix_constant,
    probe,
    sha256_hex,
    split,
)

__all__ = ["API_VERSION", "classify", "hash_binary", "hash_fixed", "index_add", "mix_constant",
           "probe", "sha256_hex", "split"]
