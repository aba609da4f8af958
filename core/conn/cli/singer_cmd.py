"""``conn singer tap`` and ``conn singer target``: what their options mean. The tap and the
target themselves are :mod:`conn.singer.tap` and :mod:`conn.singer.target`.

Connector selection (both commands):

* **project mode** - ``conn singer tap SOURCE --project conn.yml`` /
  ``conn singer target DEST --project conn.yml [--sync NAME]``: the connector declared in
  ``conn.yml``. For a tap, a ``--config`` file (Meltano always passes one) is merged over
  the declared config.
* **type mode** - ``conn singer tap --type duckdb --config config.json`` /
  ``conn singer target --type files --config config.json``: no ``conn.yml``; the Singer
  config file *is* the plugin's ``config:`` block. Relative paths resolve against the
  working directory; the target keeps its planning state under ``./.conn``
  (``--state-dir``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conn import secrets
from conn.errors import ConfigError, ConnError
from conn.singer.protocol import dumps, loads

if TYPE_CHECKING:
    from conn.config.model import ConnectorConfig, Project
    from conn.plugin_base import Connector
    from conn.plugins import Registry

log = logging.getLogger("conn.singer")


def _read_json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file: {exc.strerror or exc}",
                          file=str(path)) from exc
    except ValueError as exc:
        raise ConfigError(f"the {what} file is not valid JSON: {exc}", file=str(path)) from exc


def _out() -> IO[bytes]:
    return sys.stdout.buffer


def _plugin_version(registry: Registry, kind: str, type_name: str) -> str:
    import conn

    for p in getattr(registry, "plugins", ()) or ():
        if getattr(p, "name", None) == type_name and getattr(p, "kind", None) == kind:
            return str(getattr(p, "version", None) or conn.__version__)
    return conn.__version__


def _connector_config(kind: str, name: str | None, type_name: str | None,
                      config_file: Path | None, project: Path | None,
                      ) -> tuple[ConnectorConfig, Project | None, Registry]:
    """The connector to run (project or type mode) with its config; the project if any."""
    from conn.cli.common import open_project, setup_logging
    from conn.config.model import ConnectorConfig
    from conn.plugins import get_registry

    extra = _read_json_file(config_file, "config")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError("the config file must hold a JSON object", file=str(config_file))
    if type_name:
        if name and project:
            raise ConfigError(f"give either a {kind} name from conn.yml or --type, not both")
        setup_logging()
        cfg = ConnectorConfig(name=name or type_name, type=type_name, config=dict(extra or {}))
        return cfg, None, get_registry()
    if not name:
        raise ConfigError(f"name a {kind} declared in conn.yml, or give --type TYPE "
                          f"--config FILE to run a {kind} plugin without a project")
    proj, registry = open_project(project, only={name})
    table = proj.sources if kind == "source" else proj.destinations
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r} (declared: {', '.join(table) or 'none'})",
                          file=str(proj.file), path=f"{kind}s")
    cfg = table[name]
    if extra:
        cfg = dataclasses.replace(cfg, config={**cfg.config, **extra})
    return cfg, proj, registry


def _instantiate(kind: str, cfg: ConnectorConfig, registry: Registry,
                 project: Project | None) -> Any:
    cls = (registry.source_class if kind == "source" else registry.destination_class)(cfg.type)
    secrets.register_config_secrets(cfg.config, cls.config_schema)
    cls.validate_config(cfg.config, file=str(project.file) if project else None,
                        path=f"{kind}s.{cfg.name}.config" if project else "config")
    return cls.create(cfg.config, instance=cfg.name,
                      project_dir=project.dir if project else None)


def about(kind: str, cls: type[Connector], version: str,
          capabilities: Sequence[str]) -> dict[str, Any]:
    """The ``--about`` description of a conn plugin as a Singer tap or target."""
    return {
        "name": f"{'tap' if kind == 'source' else 'target'}-conn-{cls.name}",
        "description": getattr(cls, "description", "") or "",
        "version": version,
        "capabilities": list(capabilities),
        "settings": cls.config_schema,
        "conn_plugin": {"kind": kind, "type": cls.name},
    }


def _print_about(info: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        _out().write(dumps(info) + b"\n")
        return
    lines = [f"# {info['name']}", "", info["description"], "",
             f"Version: {info['version']}", "",
             "Capabilities: " + ", ".join(info["capabilities"]), "", "## Settings", ""]
    for key, spec in (info["settings"].get("properties") or {}).items():
        desc = spec.get("description", "") if isinstance(spec, dict) else ""
        lines.append(f"- `{key}`: {desc}".rstrip(": "))
    _out().write(("\n".join(lines) + "\n").encode())


def run_tap(source_name: str | None, *, type_name: str | None, config_file: Path | None,
            catalog_file: Path | None, state_file: Path | None, discover: bool,
            about_: bool, fmt: str, project: Path | None, batch_rows: int | None) -> None:
    """Speak the Singer tap protocol for a conn source (see :mod:`conn.singer.tap`)."""
    from conn.singer import tap

    cfg, proj, registry = _connector_config("source", source_name, type_name, config_file,
                                            project)
    if about_:
        cls = registry.source_class(cfg.type)
        _print_about(about("source", cls, _plugin_version(registry, "sources", cfg.type),
                           tap.TAP_CAPABILITIES), fmt)
        return
    source = _instantiate("source", cfg, registry, proj)
    out = _out()
    try:
        streams = source.discover()
        if discover:
            out.write(dumps(tap.discover_catalog(streams)) + b"\n")
            out.flush()
            return
        catalog = _read_json_file(catalog_file, "catalog")
        state = _read_json_file(state_file, "state") or {}
        if not isinstance(state, dict):
            raise ConfigError("the state file must hold a JSON object", file=str(state_file))
        selected = tap.selected_streams(streams, catalog, source_name=cfg.name,
                                        catalog_file=str(catalog_file))
        tap.run_tap(source, selected, state, out, batch_rows or source.default_batch_rows)
    finally:
        source.close()


def _parse_objects(values: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    default, per_stream = None, {}
    for v in values:
        if "=" in v:
            s, o = v.split("=", 1)
            per_stream[s] = o
        else:
            default = v
    return default, per_stream


def _state_project(cfg: ConnectorConfig, proj: Project | None, state_dir: Path | None
                   ) -> Project:
    """The project the target's syncs run in: conn.yml's, else (type mode) one holding
    just the destination, with its state under ``--state-dir`` or ``./.conn``."""
    from conn.config.model import Project

    if proj is None:
        root = Path(state_dir).resolve() if state_dir else Path.cwd() / ".conn"
        proj = Project(file=Path.cwd() / "conn.yml", sources={},
                       destinations={cfg.name: cfg}, syncs={}, state={"url": str(root)})
    elif state_dir:
        proj = dataclasses.replace(proj, state={**proj.state, "url": str(Path(state_dir)
                                                                         .resolve())})
    return dataclasses.replace(proj, destinations={**proj.destinations, cfg.name: cfg})


def run_target(dest_name: str | None, *, type_name: str | None, config_file: Path | None,
               project: Path | None, sync_names: Sequence[str], objects: Sequence[str],
               mode: str | None, match_key: str | None, primary_key: Sequence[str],
               state_dir: Path | None, batch_rows: int | None, full_resync: bool,
               input_file: Path | None = None, about_: bool = False,
               fmt: str = "json", loader: str | None = None) -> None:
    """Load Singer messages from stdin into a conn destination (see
    :mod:`conn.singer.target`). ``loader`` names this loader for its planning state
    (:func:`conn.singer.target.loader_identity`)."""
    from conn.singer import target

    cfg, proj, registry = _connector_config("destination", dest_name, type_name,
                                            config_file, project)
    if about_:
        cls = registry.destination_class(cfg.type)
        _print_about(about("destination", cls,
                           _plugin_version(registry, "destinations", cfg.type),
                           target.TARGET_CAPABILITIES), fmt)
        return
    # Syncs named with --sync come from conn.yml; otherwise one sync per Singer stream.
    declared = target.declared_syncs(proj, cfg, sync_names)
    proj = _state_project(cfg, proj, state_dir)
    default_object, per_stream = _parse_objects(objects)

    def destination_objects() -> list[str]:
        d = _instantiate("destination", cfg, registry, proj if proj.file.exists() else None)
        try:
            return [o.name for o in d.objects()]
        finally:
            d.close()

    singer_target = target.SingerTarget(
        cfg, proj, registry, declared=declared, objects=per_stream,
        default_object=default_object, destination_objects=destination_objects, mode=mode,
        match_key=match_key, primary_key=primary_key, batch_rows=batch_rows,
        full_resync=full_resync, type_name=type_name, loader=loader)
    fh = open(input_file, "rb") if input_file else sys.stdin.buffer  # noqa: SIM115
    try:
        report = singer_target.run(fh, _out())
    finally:
        if input_file:
            fh.close()
    for rep in report.syncs:
        sys.stderr.write(f"conn singer target: {rep.name}: {rep.status}, read "
                         f"{rep.rows_read}, inserted {rep.inserted}, updated {rep.updated}, "
                         f"unchanged {rep.unchanged}, withheld by consent "
                         f"{rep.consent_denied}, rejected {rep.rejected}\n")
    failed = next((r for r in report.syncs if r.status not in ("ok", "rejected")), None)
    if failed is not None:
        raise ConnError(f"sync {failed.name!r} failed: {failed.error}; the STATE after the "
                        f"unacknowledged rows was not emitted")
    if any(r.status == "rejected" for r in report.syncs):
        log.warning("some rows were rejected; see 'conn rejected SYNC'")
