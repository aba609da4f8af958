"""Render the API reference of what plugin authors import (docs/api/*.md) from the
docstrings, so it cannot drift from the code.

    python scripts/api_docs.py           # write docs/api/
    python scripts/api_docs.py --check   # exit 1 if docs/api/ is not what the code says

``tests/test_api_docs.py`` runs the check in ``make test``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api"

#: module -> what the page is about (one page per module).
MODULES = {
    "conn.pipeline": "What flows through the pipeline, sealed by the stage that made it: "
                     "gated and mapped batches, and the write requests destinations get.",
    "conn.destination": "Base class for destinations, the objects they declare and the data "
                        "they receive and return.",
    "conn.streaming": "Change streams: the capability a source adds to be followed "
                      "continuously (conn sync --follow).",
    "conn.events": "Events as a sync kind (`mode: events`): how a request's records read "
                   "as events with their ids, names and times.",
    "conn.http": "The HTTP toolkit for destinations: client, retries, rate limits, auth, "
                 "batch splitting, dry-run descriptions.",
    "conn.testing.http": "The HTTP test kit: a fault-injecting local server and vcrpy "
                         "cassette helpers.",
    "conn.testing.harness": "Drive a source or destination the way the runtime does.",
    "conn.testing.sync": "Run whole syncs in a test.",
    "conn.serve.jobs": "What `conn serve` runs: scheduled syncs, and how a continuous job "
                       "(a streaming sync) plugs in.",
}


def page_name(module: str) -> str:
    return module + ".md"


# --- docstrings: reStructuredText roles and blocks to Markdown ----------------------------


def markdown(doc: str) -> str:
    """A docstring in Markdown: ``x`` and roles become code, code blocks fences."""
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        block = re.match(r"^(\s*)\.\. code-block::\s*(\w*)\s*$", line)
        if block or (line.rstrip().endswith("::") and i + 1 < len(lines) and \
                not lines[i + 1].strip()):
            lang = block.group(2) if block else "python"
            if not block:
                out.append(inline(line.rstrip()[:-1].rstrip() + ":"))
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            body: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            indent = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
            out += ["", f"```{lang}", *(b[indent:] for b in body), "```", ""]
            continue
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"[-=~]{3,}", underline.strip()) and \
                len(underline.strip()) >= len(line.strip()):
            out += [f"**{inline(line.strip())}**", ""]  # a reStructuredText section title
            i += 2
            continue
        out.append(inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def inline(text: str) -> str:
    text = re.sub(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`",
                  lambda m: f"`{m.group(1).split('.')[-1] if '~' in m.group(0) else m.group(1)}`",
                  text)
    return text.replace("``", "`")


# --- signatures -------------------------------------------------------------------------


def value(v: Any) -> str:
    """A default value, stable between runs (sets sorted, no memory addresses)."""
    if isinstance(v, frozenset | set):
        inner = ", ".join(value(x) for x in sorted(v, key=repr))
        return f"{type(v).__name__}({{{inner}}})" if v else f"{type(v).__name__}()"
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        args = ", ".join(f"{f.name}={value(getattr(v, f.name))}"
                         for f in dataclasses.fields(v) if f.repr)
        return f"{type(v).__name__}({args})"
    if callable(v):
        return getattr(v, "__qualname__", type(v).__name__)
    text = repr(v)
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def signature(obj: Any, *, skip_self: bool = False) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    star = False
    for p in sig.parameters.values():
        if skip_self and p.name in ("self", "cls") and not parts:
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        if p.kind is p.VAR_POSITIONAL:
            star = True
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {value(p.default)}" if p.annotation is not p.empty \
                else f"={value(p.default)}"
        parts.append(text)
    out = f"({', '.join(parts)})"
    if sig.return_annotation is not sig.empty:
        out += f" -> {annotation(sig.return_annotation)}"
    return out


def annotation(a: Any) -> str:
    return a if isinstance(a, str) else inspect.formatannotation(a)


# --- pages ------------------------------------------------------------------------------


def public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isclass(v) or inspect.isfunction(v))
                 and getattr(v, "__module__", None) == module.__name__]
    return sorted(names, key=lambda n: (not inspect.isclass(getattr(module, n)), n))


def members(cls: type) -> list[tuple[str, Any]]:
    out = []
    for name, attr in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(attr, property | staticmethod | classmethod) or inspect.isfunction(attr):
            out.append((name, attr))
    return out


def render_class(name: str, cls: type, module: str) -> list[str]:
    lines = [f"### `{name}`", ""]
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    head = f"class {name}{signature(cls, skip_self=True).removesuffix(' -> None')}"
    lines += ["```python", head, "```", ""]
    if bases:
        lines += [f"Bases: {', '.join(f'`{b}`' for b in bases)}", ""]
    doc = inspect.getdoc(cls)
    if doc:
        lines += [markdown(doc), ""]
    for mname, attr in members(cls):
        fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        kind = ("property" if isinstance(attr, property) else "classmethod"
                if isinstance(attr, classmethod) else "staticmethod"
                if isinstance(attr, staticmethod) else "method")
        sig = "" if kind == "property" else signature(fn, skip_self=kind != "staticmethod")
        marks = []
        if getattr(fn, "__isabstractmethod__", False):
            marks.append("abstract")
        if getattr(fn, "__final__", False):
            marks.append("final")
        if kind in ("property", "classmethod", "staticmethod"):
            marks.append(kind)
        note = f" ({', '.join(marks)})" if marks else ""
        lines += [f"#### `{name}.{mname}{sig}`{note}", ""]
        doc = inspect.getdoc(fn)
        if doc:
            lines += [markdown(doc), ""]
    return lines


def render(module_name: str) -> str:
    module = importlib.import_module(module_name)
    lines = [f"# `{module_name}`", "",
             "<!-- Generated by scripts/api_docs.py from the docstrings; do not edit. -->", "",
             MODULES[module_name], ""]
    doc = inspect.getdoc(module)
    if doc:
        lines += [markdown(doc), ""]
    classes, functions, data = [], [], []
    for name in public_names(module):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            classes.append((name, obj))
        elif callable(obj):
            functions.append((name, obj))
        else:
            data.append((name, obj))
    if classes:
        lines += ["## Classes", ""]
        for name, cls in classes:
            lines += render_class(name, cls, module_name)
    if functions:
        lines += ["## Functions", ""]
        for name, fn in functions:
            lines += [f"### `{name}{signature(fn)}`", ""]
            doc = inspect.getdoc(fn)
            if doc:
                lines += [markdown(doc), ""]
    if data:
        lines += ["## Values", ""]
        for name, obj in data:
            lines += [f"### `{name}`", "", "```python", f"{name} = {value(obj)}", "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def index() -> str:
    lines = ["# API reference", "",
             "<!-- Generated by scripts/api_docs.py from the docstrings; do not edit. -->", "",
             "What plugin authors import, rendered from the code's docstrings "
             "(`make api-docs`; a test fails when a page is out of date). The guide is "
             "[../plugin-authoring.md](../plugin-authoring.md).", ""]
    for name, about in MODULES.items():
        lines.append(f"- [`{name}`]({page_name(name)}): {about}")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> content of every page."""
    out = {"README.md": index()}
    for name in MODULES:
        out[page_name(name)] = render(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with docs/api/ instead of writing it")
    args = parser.parse_args(argv)
    wanted = pages()
    if args.check:
        stale = sorted(n for n, text in wanted.items()
                       if not (OUT / n).is_file() or (OUT / n).read_text(encoding="utf-8") != text)
        extra = sorted(p.name for p in OUT.glob("*.md") if p.name not in wanted) \
            if OUT.is_dir() else []
        if stale or extra:
            print(f"docs/api is out of date: {', '.join(stale + extra)}; run make api-docs",
                  file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.glob("*.md"):
        if p.name not in wanted:
            p.unlink()
    for n, text in wanted.items():
        (OUT / n).write_text(text, encoding="utf-8")
    print(f"wrote {len(wanted)} page(s) to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
