"""The ``profiles:`` section of ``conn.yml``: profile sets, as typed objects.

The JSON Schema (``schemas/profiles.schema.json``) checks shapes; this module checks what
a schema cannot (references between entries) and fills in the defaults that
docs/profiles.md states. Every error names the file and the path of the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conn.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from conn.config.model import Project, SyncConfig

#: Built-in identifier types, in their default priority order.
BUILTIN_TYPES = ("customer_id", "email", "phone", "device_id", "anonymous_id")
#: How values of each kind are normalised (the consent layer's rules, conn.consent.normalize).
KINDS = (*BUILTIN_TYPES, "custom")
#: Limits a type has unless it says otherwise.
DEFAULT_LIMITS = {"customer_id": 1}
#: A value held by more records than this is junk unless the profile set says otherwise.
DEFAULT_MAX_RECORDS = 100
#: Identifier types of a matcher's pairs are this and the matcher's index; no declared
#: type may start with it.
MATCH_TYPE_PREFIX = "~match"
RULES = ("most_recent", "most_frequent", "source_priority", "first_non_null", "max", "min",
         "consent")


@dataclass(frozen=True)
class IdentifierType:
    """One identifier type of a profile set: its normalisation kind and rules."""

    name: str
    kind: str
    priority: int
    limit: int | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    country_code: str | None = None


@dataclass(frozen=True)
class Edge:
    """A stream whose rows tie identifiers together (``identifiers``: column -> type)."""

    name: str
    source: str
    stream: str | None
    query: str | None
    identifiers: dict[str, str]
    updated_at: str | None = None


@dataclass(frozen=True)
class FieldRule:
    """A golden-record field: which column, under which survivorship rule."""

    name: str
    column: str
    rule: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatcherSpec:
    """One entry of ``profiles.NAME.matchers``: the plugin, the threshold, the record
    columns it compares, its blocking rules (each a list of columns that must be equal
    for two records to be compared) and the plugin's own ``options``."""

    plugin: str
    threshold: float
    columns: tuple[str, ...]
    blocking: tuple[tuple[str, ...], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    @property
    def type_name(self) -> str:
        """The identifier type of this matcher's pairs (one per entry, in order)."""
        return f"{MATCH_TYPE_PREFIX}{self.index}"


@dataclass(frozen=True)
class ProfileSet:
    """One entry of ``profiles:``."""

    name: str
    types: dict[str, IdentifierType]
    edges: dict[str, Edge]
    rounds: tuple[tuple[str, ...], ...]
    junk_values: tuple[str, ...] = ()
    fields: dict[str, FieldRule] = field(default_factory=dict)
    matchers: tuple[MatcherSpec, ...] = ()

    @property
    def stream(self) -> str:
        """The stream syncs read: ``profiles.NAME``."""
        return f"profiles.{self.name}"


def profile_sets(project: Project) -> dict[str, ProfileSet]:
    """The project's profile sets; raises every problem at once."""
    sets, errors = _parse(project)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return sets


def profile_errors(project: Project) -> list[ConfigError]:
    """What is wrong in ``profiles:`` beyond its shape, and in the syncs'
    ``consent.subject_type`` (the loader reports these)."""
    sets, errors = _parse(project)
    for sync in project.syncs.values():
        errors += _subject_type_errors(project, sync, sets)
    return errors


def consent_subject_types(project: Project, sync: SyncConfig
                          ) -> tuple[ProfileSet, tuple[IdentifierType, ...]] | None:
    """For a sync over ``profiles.NAME`` whose ``consent.subject_type`` names identifier
    types: the set and those types (each consent event's subject is read as each of
    them, docs/profiles.md "Consent follows the person"); None for any other sync."""
    names = _subject_type_names(sync)
    ps = profile_sets(project).get(str(sync.stream or "").removeprefix("profiles."))
    if not names or ps is None:
        return None
    return ps, tuple(ps.types[n] for n in names)


def _subject_type_names(sync: SyncConfig) -> list[str]:
    consent = sync.consent if isinstance(sync.consent, dict) else {}
    value = consent.get("subject_type")
    if isinstance(value, str):
        return [value]
    # Another shape (a number, a mapping) is the schema's to report.
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _subject_type_errors(project: Project, sync: SyncConfig,
                         sets: dict[str, ProfileSet]) -> list[ConfigError]:
    """``consent.subject_type`` needs a sync over a declared profile set, a consent
    source and no ``consent.subject``, and names identifier types of the set."""
    names = _subject_type_names(sync)
    if not names:
        return []
    f, base = str(project.file), f"syncs.{sync.name}.consent"
    src = dict.get(project.sources, sync.source)  # not [...]: an unset ${VAR} raises
    if src is None:
        return []  # an unknown source: cross_check reports it
    set_name = str(sync.stream or "").removeprefix("profiles.")
    if src.type != "profiles" or set_name not in sets:
        return [ConfigError(
            f"subject_type applies to a sync reading a profile set (source: "
            f"{SOURCE_NAME}, stream: profiles.NAME with NAME under profiles:); this sync "
            f"reads {sync.stream or sync.query!r} from {sync.source!r}",
            file=f, path=f"{base}.subject_type")]
    errs = []
    consent = sync.consent
    if not consent.get("source"):
        errs.append(ConfigError("subject_type says how a consent source's subjects are "
                                "read, but consent.source is not set: name the consent "
                                "source", file=f, path=f"{base}.source"))
    if consent.get("subject"):
        errs.append(ConfigError("expected either 'subject' (a column of the synced rows) "
                                "or 'subject_type' (events reach the profile through any "
                                "of its identifiers), not both", file=f,
                                path=f"{base}.subject"))
    types = sets[set_name].types
    for i, n in enumerate(names):
        if n not in types:
            where = f"{base}.subject_type" + ("" if isinstance(
                consent.get("subject_type"), str) else f"[{i}]")
            errs.append(ConfigError(f"unknown identifier type {n!r}: expected an "
                                    f"identifier type of profile set {set_name!r} "
                                    f"({', '.join(types) or 'none'})", file=f, path=where))
    return errs


def _parse(project: Project) -> tuple[dict[str, ProfileSet], list[ConfigError]]:
    raw = project.raw.get("profiles")
    f = str(project.file)
    out: dict[str, ProfileSet] = {}
    errors: list[ConfigError] = []
    if not isinstance(raw, dict):
        return out, errors
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            continue  # the schema reported it
        base = f"profiles.{name}"
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            errors.append(ConfigError(f"profile set name {name!r} must be letters, digits "
                                      f"and '_' (it names the stream profiles.NAME)",
                                      file=f, path="profiles"))
            continue
        ps, errs = _profile_set(project, name, spec, f, base)
        errors += errs
        out[name] = ps
    return out, errors


def _types(spec: dict[str, Any], used: list[str], f: str,
           base: str) -> tuple[dict[str, IdentifierType], list[ConfigError]]:
    declared = spec.get("identifiers") or {}
    junk = spec.get("junk") or {}
    default_cap = junk.get("max_records", DEFAULT_MAX_RECORDS)
    errors: list[ConfigError] = []
    order = list(declared) + [t for t in BUILTIN_TYPES if t in used and t not in declared]
    order += [t for t in dict.fromkeys(used) if t not in order]
    types = {}
    for prio, name in enumerate(order):
        opts = declared.get(name) or {}
        kind = opts.get("kind") or (name if name in BUILTIN_TYPES else None)
        if name.startswith(MATCH_TYPE_PREFIX):
            where = f"{base}.identifiers.{name}" if name in declared else f"{base}.edges"
            errors.append(ConfigError(f"identifier type names starting with "
                                      f"{MATCH_TYPE_PREFIX!r} are reserved for matchers' pairs",
                                      file=f, path=where))
            continue
        if kind is None:
            where = f"{base}.identifiers.{name}" if name in declared else f"{base}.edges"
            errors.append(ConfigError(
                f"unknown identifier type {name!r}: the built-in types are "
                f"{', '.join(BUILTIN_TYPES)}; declare another as "
                f"'identifiers: {{{name}: {{kind: custom}}}}'", file=f, path=where))
            continue
        types[name] = IdentifierType(
            name=name, kind=kind, priority=prio,
            limit=opts.get("limit", DEFAULT_LIMITS.get(name)),
            max_records=opts.get("max_records", default_cap),
            country_code=None if opts.get("country_code") is None
            else str(opts["country_code"]))
    return types, errors


def _profile_set(project: Project, name: str, spec: dict[str, Any], f: str,
                 base: str) -> tuple[ProfileSet, list[ConfigError]]:
    errors: list[ConfigError] = []
    edges: dict[str, Edge] = {}
    used: list[str] = []
    for ename, e in (spec.get("edges") or {}).items():
        if not isinstance(e, dict):
            continue
        path = f"{base}.edges.{ename}"
        # Not the profiles source itself: a profile set cannot be its own edge.
        readable = [n for n, c in project.sources.items() if c.type != "profiles"]
        if e.get("source") not in readable:
            errors.append(ConfigError(f"unknown source {e.get('source')!r} (declared: "
                                      f"{', '.join(readable) or 'none'})",
                                      file=f, path=f"{path}.source"))
        if ("stream" in e) == ("query" in e):
            errors.append(ConfigError("expected exactly one of 'stream' or 'query'",
                                      file=f, path=path))
        ids = {str(k): str(v) for k, v in (e.get("identifiers") or {}).items()}
        used += ids.values()
        edges[str(ename)] = Edge(str(ename), str(e.get("source")), e.get("stream"),
                                 e.get("query"), ids, e.get("updated_at"))
    types, errs = _types(spec, used, f, base)
    errors += errs
    rules = spec.get("rules")
    if rules:
        rounds = tuple(tuple(r) for r in rules)
        for i, r in enumerate(rounds):
            for j, t in enumerate(r):
                if t not in types:
                    errors.append(ConfigError(
                        f"rule names identifier type {t!r}, which no edge declares "
                        f"(types: {', '.join(types) or 'none'})", file=f,
                        path=f"{base}.rules[{i}][{j}]"))
    else:
        rounds = tuple((t,) for t in types)
    fields = {}
    for fname, fs in (spec.get("fields") or {}).items():
        if not isinstance(fs, dict):
            continue
        srcs = tuple(fs.get("sources") or ())
        for i, s in enumerate(srcs):
            if s not in edges:
                errors.append(ConfigError(f"unknown edge {s!r} (edges: {', '.join(edges)})",
                                          file=f, path=f"{base}.fields.{fname}.sources[{i}]"))
        if fs.get("rule") == "source_priority" and not srcs:
            errors.append(ConfigError("rule 'source_priority' needs 'sources': edge names, "
                                      "highest priority first", file=f,
                                      path=f"{base}.fields.{fname}"))
        timed = any(e.updated_at for e in edges.values())
        if fs.get("rule") in ("most_recent", "consent") and not timed:
            errors.append(ConfigError(f"rule {fs.get('rule')!r} needs an 'updated_at' "
                                      "column on at least one edge", file=f,
                                      path=f"{base}.fields.{fname}.rule"))
        fields[str(fname)] = FieldRule(str(fname), str(fs.get("column") or fname),
                                       str(fs.get("rule")), srcs)
    junk = tuple(str(v) for v in (spec.get("junk") or {}).get("values") or ())
    matchers, errs = _matchers(spec, edges, f, base)
    errors += errs
    return ProfileSet(name, types, edges, rounds, junk, fields, matchers), errors


def _matchers(spec: dict[str, Any], edges: dict[str, Edge], f: str,
              base: str) -> tuple[tuple[MatcherSpec, ...], list[ConfigError]]:
    """The ``matchers:`` entries (the schema checked their shapes); blocking columns
    must be among the entry's ``columns``."""
    out, errors = [], []
    for i, m in enumerate(spec.get("matchers") or ()):
        if not isinstance(m, dict):
            continue
        cols = tuple(str(c) for c in m.get("columns") or ())
        blocking = tuple(tuple(str(c) for c in (b if isinstance(b, list) else [b]))
                         for b in m.get("blocking") or ())
        for j, rule in enumerate(blocking):
            for c in rule:
                # A bare name must be a compared column; an SQL expression over them
                # (substr(name, 1, 1)) is the plugin's to read.
                if c.isidentifier() and c not in cols:
                    errors.append(ConfigError(
                        f"blocking column {c!r} is not among the matcher's columns "
                        f"({', '.join(cols)})", file=f, path=f"{base}.matchers[{i}].blocking[{j}]"))
        out.append(MatcherSpec(str(m.get("plugin")), float(m.get("threshold", 0.9)), cols,
                               blocking, dict(m.get("options") or {}), i))
    return tuple(out), errors


#: The source syncs name to read profile sets (``source: profiles``,
#: ``stream: profiles.NAME``); declared implicitly when ``profiles:`` is present.
SOURCE_NAME = "profiles"


def add_profiles_source(raw: dict[str, Any], sources: dict[str, Any]) -> None:
    """Declare the implicit ``profiles`` source when the file has a ``profiles:``
    section and no source of that name."""
    from conn.config.model import ConnectorConfig

    if isinstance(raw.get("profiles"), dict) and SOURCE_NAME not in sources:
        dict.__setitem__(sources, SOURCE_NAME, ConnectorConfig(
            name=SOURCE_NAME, type="profiles", config={}, raw={"type": "profiles"}))
