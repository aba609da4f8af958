"""Parameter coercion without pydantic for conn's simple option types.

Recent typer versions coerce every parameter value through a pydantic ``TypeAdapter``,
so any command with a non-flag option imports pydantic and builds adapters (~0.05-0.1 s
of a one-row ``conn sync``). conn's options are ``str``, ``int``, ``bool``, ``Path`` and
``list[str]`` (optional or not). For values that need no real conversion (a string for
a ``str``, an integer literal for an ``int``, strings for a ``list[str]``, ``None`` for
any of these) the result is computed here, identical to the adapter's. Every other case
(a malformed integer, a given path, constraints, enums, custom parsers) goes to typer's
own coercion, built lazily, so values and error messages stay typer's.

Installed only when typer has the hook this relies on; otherwise nothing changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_MISS = object()


def _plain(info: Any) -> bool:
    return (getattr(info, "parser", None) is None and getattr(info, "min", None) is None
            and getattr(info, "max", None) is None
            and getattr(info, "click_type", None) is None)


def _fast(annotation: Any, value: Any) -> Any:
    if annotation is str:
        return value if type(value) is str else _MISS
    if annotation is bool:
        return value if type(value) is bool else _MISS
    if annotation is int:
        if type(value) is int:
            return value
        if type(value) is str and _INT.match(value):
            return int(value)
        return _MISS
    if annotation == list[str] and isinstance(value, (list, tuple)):
        return list(value) if all(type(v) is str for v in value) else _MISS
    return _MISS


class _LightParam:
    """Duck-typed typer ``RuntimeParam``: fast path, else typer's own (lazily built)."""

    __slots__ = ("annotation", "descriptor", "real")

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self.annotation = descriptor.annotation
        self.real: Any = None

    def _real(self) -> Any:
        if self.real is None:
            from typer._coercion import build_runtime_param

            self.real = build_runtime_param(self.descriptor)
        return self.real

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if not (multi and isinstance(value, str)):
            out = _fast(self.annotation, value)
            if out is not _MISS:
                return out
        return self._real().coerce(value, param=param, ctx=ctx)


def install() -> None:
    """Route conn's simple parameters around pydantic (idempotent)."""
    try:
        from typer import _coercion, core
    except ImportError:  # pragma: no cover - older typer: nothing to do
        return
    cls = getattr(core, "_TyperParameter", None)
    original = getattr(cls, "get_runtime_param", None)
    if (cls is None or original is None or getattr(original, "_conn_light", False)
            or not hasattr(_coercion, "build_runtime_param")):
        return

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            desc = self.type_descriptor
            if (desc.file_annotation is None and _plain(desc.parameter_info)
                    and desc.annotation in (str, int, bool, list[str], Path)):
                self._runtime_param = _LightParam(desc)
            else:
                self._runtime_param = original(self)
        return self._runtime_param

    get_runtime_param._conn_light = True  # type: ignore[attr-defined]
    cls.get_runtime_param = get_runtime_param
