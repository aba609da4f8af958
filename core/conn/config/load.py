"""Load ``conn.yml``: parse YAML, resolve ``${ENV}`` references, validate everything."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conn import schemas, secrets
from conn.config.model import ConnectorConfig, Connectors, Project, SyncConfig
from conn.config.profiles import add_profiles_source, profile_errors
from conn.config.reader import load_yaml
from conn.config.schedule import parse_schedule
from conn.config.validate import schema_errors
from conn.errors import ConfigError, ConfigErrors, PluginError, PluginNotFound

if TYPE_CHECKING:
    from conn.plugins import Registry

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
DEFAULT_FILE = "conn.yml"


def find_project_file(start: Path | str | None = None) -> Path:
    """``conn.yml`` in ``start`` (a file or folder) or its parents; env ``CONN_PROJECT``."""
    start = Path(start or os.environ.get("CONN_PROJECT") or Path.cwd())
    if start.is_file():
        return start
    for folder in (start, *start.parents):
        for name in (DEFAULT_FILE, "conn.yaml"):
            if (folder / name).is_file():
                return folder / name
    raise ConfigError(f"no {DEFAULT_FILE} found in {start} or its parents; "
                      f"create one with 'conn init' (or 'conn init --demo')")


def interpolate(node: Any, file: str, path: str = "", errors: list | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; register values as
    secrets. Unset variables without default are errors naming the path."""
    if isinstance(node, dict):
        return {_key(k): interpolate(v, file, f"{path}.{_key(k)}" if path else str(_key(k)),
                                     errors)
                for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, file, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        val = os.environ.get(var)
        if val is None:
            if default is not None:
                return default
            err = ConfigError(f"environment variable {var} is not set", file=file, path=path)
            if errors is None:
                raise err
            errors.append(err)
            return ""
        secrets.register(val)
        return val

    out = _ENV.sub(sub, node)
    # A value that is exactly one reference keeps YAML-ish typing for numbers/booleans.
    return out


def load_project(path: Path | str | None = None, *, registry: Registry | None = None,
                 validate_plugins: bool | set[str] = True) -> Project:
    """Load and validate a project file. With ``validate_plugins``, each connector's
    ``config:`` is validated against its plugin's own schema (loading only those plugins).
    A set of connector names validates only those (``conn sync a b`` loads two plugins).
    Raises :class:`ConfigErrors` listing every problem found."""
    file = find_project_file(path)
    fname = str(file)
    raw = load_yaml(file)
    errors: list[ConfigError] = []
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", file=fname)
    # ${ENV} references under a source or destination are resolved now but reported
    # only when that connector is used: an unset variable of a destination one command
    # does not touch (a token for prod, say) must not break `conn runs` or another pair's
    # sync. Elsewhere (syncs, state, consent sources) an unset variable is an error now.
    data: dict[Any, Any] = {}
    unresolved: dict[str, dict[str, list[ConfigError]]] = {"sources": {}, "destinations": {}}
    for key, value in raw.items():
        key = _key(key)
        if key in unresolved and isinstance(value, dict):
            section = {}
            for name, entry in value.items():
                name = _key(name)
                found: list[ConfigError] = []
                section[name] = interpolate(entry, fname, f"{key}.{name}", found)
                if found:
                    unresolved[key][str(name)] = found
            data[key] = section
        elif key == "alerts":
            # conn.alerts resolves its ${ENV} references channel by channel: an unset
            # SMTP password disables that channel, not every command.
            data[key] = value
        else:
            data[key] = interpolate(value, fname, str(key), errors)
    # Before any message can quote a value: the credentials of every URL in the file.
    secrets.register_url_credentials(data)
    later = [e for table in unresolved.values() for errs in table.values() for e in errs]
    errors += _outside(schema_errors(data, schemas.load("conn.schema.json"), file=fname,
                                     path="", registry=schemas.registry()), later)
    # Names are text: YAML reads `1:` or `yes:` as a number or a boolean.
    for table in ("sources", "destinations", "syncs", "consent_sources"):
        listed = data.get(table)
        for name in listed if isinstance(listed, dict) else ():
            if not isinstance(name, str):
                errors.append(ConfigError(f"name {name!r} is not text: quote it "
                                          f"('\"{name}\":')", file=fname, path=table))
    # Structural problems stop here; otherwise keep going to report every problem at once.
    if any(not isinstance(data.get(k) or {}, dict)
           for k in ("sources", "destinations", "syncs", "consent_sources", "state")) or \
            any(e.path in ("sources", "destinations", "syncs", "consent_sources")
                and e.detail.startswith("name ") for e in errors):
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    def entries(kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in (data.get(kind) or {}).items() if isinstance(v, dict)}

    def connectors(kind: str) -> Connectors:
        out = Connectors(unresolved=unresolved[kind])
        for name, c in entries(kind).items():
            out[name] = ConnectorConfig(
                name=name, type=str(c.get("type", "")), config=c.get("config") or {},
                # A wrong type is reported with the schema errors; build on, not crash.
                purposes=tuple(c["purposes"]) if isinstance(c.get("purposes"), list) else (),
                policies=c["policies"] if isinstance(c.get("policies"), dict) else {},
                raw=c,
            )
        return out

    sources, dests = connectors("sources"), connectors("destinations")
    add_profiles_source(data, sources)
    syncs = {}
    for name, s in entries("syncs").items():
        pk = s.get("primary_key") or ()
        schedule, problems = parse_schedule(s.get("schedule"), file=fname,
                                            path=f"syncs.{name}.schedule")
        errors += problems
        follow = s.get("follow") is True
        if follow and s.get("schedule") is not None:
            errors.append(ConfigError("a followed sync runs continuously: give it either "
                                      "'follow: true' or a 'schedule', not both", file=fname,
                                      path=f"syncs.{name}.schedule"))
        syncs[name] = SyncConfig(
            name=name, source=str(s.get("source", "")),
            destination=str(s.get("destination", "")), object=str(s.get("object", "")),
            stream=s.get("stream"), query=s.get("query"),
            primary_key=tuple([pk] if isinstance(pk, str) else pk),
            match_key=s.get("match_key"), mode=s.get("mode", "upsert"),
            event=s["event"] if isinstance(s.get("event"), dict) else None,
            mapping=s.get("mapping") or {}, consent=s.get("consent") or {},
            purposes=tuple(s["purposes"]) if isinstance(s.get("purposes"), list) else None,
            policies=s.get("policies") or {}, personal=s.get("personal") or {},
            batch_rows=s.get("batch_rows"), schedule=schedule,
            max_latency_ms=s.get("max_latency_ms"), follow=follow, raw=s,
        )
    project = Project(file=file, sources=sources, destinations=dests, syncs=syncs,
                      consent_sources=entries("consent_sources"),
                      state=data.get("state") or {}, raw=data)
    errors += cross_check(project) + profile_errors(project)
    if "alerts" in data:
        from conn.config.alerts import alert_config_errors

        errors += alert_config_errors(project)
    from conn.config.traits import parse_activation  # traits, audiences, triggers

    errors += parse_activation(data, fname)[1]
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    if validate_plugins:
        only = validate_plugins if isinstance(validate_plugins, set) else None
        errors += plugin_config_errors(project, registry, only)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return project


def _key(key: Any) -> Any:
    # YAML reads an unquoted `null:` key as None; conn's only such key is the mapping
    # option `null: skip|send`, so a None key always means "null".
    return "null" if key is None else key


def _outside(errors: list[ConfigError], unresolved: list[ConfigError]) -> list[ConfigError]:
    """``errors`` without those about a value that was an unset ``${VAR}`` (it reads as
    the empty string until the variable is set; the variable is the problem to report)."""
    paths = [e.path for e in unresolved if e.path]
    if not paths:
        return errors
    return [e for e in errors
            if not any(e.path == p or (e.path or "").startswith((p + ".", p + "["))
                       for p in paths)]


def cross_check(project: Project) -> list[ConfigError]:
    """References between sections: syncs name declared sources and destinations, purposes
    of a sync are a subset of its destination's."""
    f = str(project.file)
    errs = []
    for s in project.syncs.values():
        base = f"syncs.{s.name}"
        # A sync without a source is loaded by 'conn singer target --sync NAME'.
        if s.source and s.source not in project.sources:
            errs.append(ConfigError(f"unknown source {s.source!r} (declared: "
                                    f"{', '.join(project.sources) or 'none'})",
                                    file=f, path=f"{base}.source"))
        if s.destination not in project.destinations:
            errs.append(ConfigError(f"unknown destination {s.destination!r} (declared: "
                                    f"{', '.join(project.destinations) or 'none'})",
                                    file=f, path=f"{base}.destination"))
        elif s.purposes is not None:
            declared = {str(p) for p in dict.__getitem__(project.destinations,
                                                         s.destination).purposes}
            wider = {str(p) for p in s.purposes} - declared
            if wider:
                errs.append(ConfigError(
                    f"purposes {sorted(wider)} are not among destination "
                    f"{s.destination!r}'s purposes "
                    f"{sorted(declared)}; a sync may "
                    f"narrow its destination's purposes, never widen them",
                    file=f, path=f"{base}.purposes"))
        if (s.stream is None) == (s.query is None):
            errs.append(ConfigError("expected exactly one of 'stream' or 'query'",
                                    file=f, path=base))
        errs += event_config_errors(s, f)
        cs = s.consent.get("source") if isinstance(s.consent, dict) else None
        if cs and cs not in project.consent_sources:
            errs.append(ConfigError(f"unknown consent source {cs!r} (declared: "
                                    f"{', '.join(project.consent_sources) or 'none'})",
                                    file=f, path=f"{base}.consent.source"))
        errs += _max_age_errors(s.consent, f, base)
    for name, c in project.consent_sources.items():
        if c.get("source") not in project.sources:
            errs.append(ConfigError(f"unknown source {c.get('source')!r}", file=f,
                                    path=f"consent_sources.{name}.source"))
    return errs


def _max_age_errors(consent: Any, file: str, base: str) -> list[ConfigError]:
    """Each ``consent.max_age`` value must be a duration (:mod:`conn.config.durations`);
    the schema has checked that it is a mapping."""
    from conn.config.durations import parse_duration

    ages = consent.get("max_age") if isinstance(consent, dict) else None
    errs = []
    for purpose, value in ages.items() if isinstance(ages, dict) else ():
        try:
            parse_duration(value, file=file, path=f"{base}.consent.max_age.{purpose}")
        except ConfigError as exc:
            errs.append(exc)
    return errs


def plugin_config_errors(project: Project, registry: Registry | None = None,
                         only: set[str] | None = None) -> list[ConfigError]:
    """Validate each connector's ``config:`` against its plugin's schema; register the
    values of secret fields. ``only`` limits the check to some connector names."""
    from conn.plugins import get_registry

    reg = registry or get_registry()
    f = str(project.file)
    errs: list[ConfigError] = []
    for kind, table, lookup in (("sources", project.sources, reg.source_class),
                                ("destinations", project.destinations, reg.destination_class)):
        for name, c in dict.items(table):  # not table[name]: it raises for unset ${VAR}s
            if only is not None and name not in only:
                continue
            unset = list(getattr(table, "unresolved", {}).get(name, ()))
            errs += unset
            try:
                cls = lookup(c.type)
            except PluginError as exc:
                errs.append(PluginNotFound(str(exc), file=f, path=f"{kind}.{name}.type"))
                continue
            secrets.register_config_secrets(c.config, cls.config_schema)
            errs += _outside(schema_errors(c.config, cls.config_schema, file=f,
                                           path=f"{kind}.{name}.config"), unset)
    return errs


def event_config_errors(sync: SyncConfig, file: str) -> list[ConfigError]:
    """``mode: events`` needs ``event:`` (a name or ``name_from``, and ``time_from``);
    other modes take none (the schema checks the keys' shapes)."""
    base = f"syncs.{sync.name}"
    if sync.mode != "events":
        if "event" in sync.raw:
            return [ConfigError("'event' is only read in 'mode: events' (mode is "
                                f"{sync.mode!r})", file=file, path=f"{base}.event")]
        return []
    spec = sync.event
    if spec is None:
        return [ConfigError("mode 'events' needs 'event': {name: NAME or name_from: COLUMN, "
                            "time_from: COLUMN}", file=file, path=f"{base}.event")]
    errs = []
    if ("name" in spec) == ("name_from" in spec):
        errs.append(ConfigError("expected exactly one of 'name' (the event's name) or "
                                "'name_from' (a column holding it)", file=file,
                                path=f"{base}.event"))
    if "time_from" not in spec:
        errs.append(ConfigError("missing 'time_from': the column holding when each event "
                                "occurred", file=file, path=f"{base}.event.time_from"))
    return errs
