"""Reading ``conn.yml`` safely: YAML with bounds, and every failure a :class:`ConfigError`
that names the file and the line.

A configuration file is small and written by people, so anything far outside that is
refused before it can cost time or memory:

* at most :data:`MAX_BYTES` bytes, read only after the size is known;
* UTF-8 text (a byte-order mark is allowed);
* at most :data:`MAX_VALUES` values once every alias is expanded, and at most
  :data:`MAX_DEPTH` levels of nesting: a YAML "billion laughs" document is a few hundred
  bytes whose aliases expand to billions of values, and everything after parsing (``${ENV}``
  interpolation, JSON Schema validation, the model) walks the expanded values. These are
  counted on the parser's event stream, before any node is built, so the count itself
  costs one pass and constant memory;
* no key twice in one mapping: YAML would keep the last one silently (two ``syncs.s1``
  would become one).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from conn.errors import ConfigError

#: Largest file conn reads as a project (bytes). Real projects are a few kilobytes.
MAX_BYTES = 4 * 1024 * 1024
#: Most values (keys and scalars, lists and mappings, aliases expanded) a project may
#: hold: a thousand syncs of thirty settings each is about 65,000. At this bound, loading
#: and validating takes about 5 s (mostly JSON Schema validation).
MAX_VALUES = 100_000
#: Deepest nesting of lists and mappings (aliases expanded).
MAX_DEPTH = 64

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Constructor(_Loader):
    """The safe loader, turning a tag's bad value (``!!int abc``, a 13th month) into a
    YAML error at that value's line instead of a bare ``ValueError``."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({exc})", node.start_mark) from None


def _line(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def read_text(path: Path) -> str:
    """The file's text: bounded in size, UTF-8, every failure naming the file."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"is larger than {MAX_BYTES // (1024 * 1024)} MB: not a conn "
                          f"project file (conn.yml holds sources, destinations and syncs)",
                          file=file)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"line {line}, column {column}: not UTF-8 text (byte "
                          f"0x{data[exc.start]:02x}); conn.yml must be a UTF-8 YAML file",
                          file=file) from None


def _check_size(text: str, file: str) -> None:
    """Count values and depth with aliases expanded, on the event stream."""
    sizes: dict[str, tuple[int, int]] = {}   # anchor -> (values, depth) once closed
    stack: list[list[Any]] = []              # open collections: [values, depth, anchor]
    total = 0

    def add(n: int, depth: int, mark: Any) -> None:
        nonlocal total
        total += n
        if total > MAX_VALUES:
            raise ConfigError(f"{_line(mark)}: more than {MAX_VALUES:,} values (aliases "
                              f"expanded); conn refuses a project this large", file=file)
        if len(stack) + depth > MAX_DEPTH:
            raise ConfigError(f"{_line(mark)}: nested more than {MAX_DEPTH} levels deep "
                              f"(aliases expanded)", file=file)
        if stack:
            top = stack[-1]
            top[0] += n
            top[1] = max(top[1], depth + 1)

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.ScalarEvent):
            add(1, 0, event.start_mark)
            if event.anchor:
                sizes[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                if any(entry[2] == event.anchor for entry in stack):
                    raise ConfigError(f"{_line(event.start_mark)}: alias *{event.anchor} "
                                      f"refers to a value that contains it", file=file)
                continue  # undefined: the composer reports it with its line
            values, depth = sizes[event.anchor]
            add(values, depth, event.start_mark)
        elif isinstance(event, yaml.CollectionStartEvent):
            add(1, 0, event.start_mark)
            stack.append([1, 0, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            values, depth, anchor = stack.pop()
            # The collection's own 1 was counted when it opened; only its content
            # still has to reach the enclosing collection.
            if stack:
                stack[-1][0] += values - 1
                stack[-1][1] = max(stack[-1][1], depth + 1)
            if anchor:
                sizes[anchor] = (values, depth)


def _check_duplicates(root: yaml.Node, loader: Any, file: str) -> None:
    """Refuse a mapping that names a key twice, with the path and both lines. Each node
    is visited once (an alias is the same node), so aliases cost nothing here."""
    seen: set[int] = set()
    todo: list[tuple[yaml.Node, str]] = [(root, "")]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # the constructor refuses unhashable keys with their line
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; keys written next to it override
                key = loader.construct_object(key_node)
                name = "null" if key is None else str(key)
                sub = f"{path}.{name}" if path else name
                try:
                    earlier = first.get(key)
                except TypeError:
                    earlier = None
                if earlier is not None:
                    raise ConfigError(
                        f"duplicate key {name!r} (line {earlier.start_mark.line + 1} and "
                        f"line {key_node.start_mark.line + 1}); YAML would keep only the "
                        f"last one: remove or rename one of them", file=file, path=sub)
                with contextlib.suppress(TypeError):
                    first[key] = key_node
                todo.append((value_node, sub))


def load_yaml(path: Path) -> Any:
    """Parse ``path`` as one YAML document within the bounds above. An empty document is
    an error (``None`` would read as a project with nothing in it)."""
    file = str(path)
    text = read_text(path)
    loader = _Constructor(text)
    try:
        _check_size(text, file)
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty: a project declares at least 'version: 1' "
                              "and its sources, destinations and syncs (start one with "
                              "'conn init')", file=file)
        _check_duplicates(node, loader, file)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids (NUL and other control characters). libyaml counts
        # the position in UTF-8 bytes, the pure-Python reader in characters.
        ch = exc.character
        code = ord(ch) if isinstance(ch, str) else int(ch)
        head = text.encode()[:exc.position].decode("utf-8", "replace") \
            if _Loader is not yaml.SafeLoader else text[:exc.position]
        line, column = head.count("\n") + 1, len(head) - (head.rfind("\n") + 1) + 1
        raise ConfigError(f"line {line}, column {column}: invalid YAML: character "
                          f"U+{code:04X} is not allowed ({exc.reason})", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{_line(mark)}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        context = getattr(exc, "context", None)
        raise ConfigError(f"{where}invalid YAML: {context + ', ' if context else ''}"
                          f"{problem}", file=file) from None
    except RecursionError:
        raise ConfigError("nested too deeply to read", file=file) from None
    finally:
        loader.dispose()
