"""Plugin discovery and the registry of connectors, transforms, state backends and
matchers.

Plugins are modules named by entry points. The entry point's *name* is the connector type
it provides (``duckdb`` in ``conn.sources``), so a command loads only the plugins it needs:
``conn sync a b`` imports two plugin modules, not every one installed.

Environment variables:

``CONN_PLUGINS_STRICT=1``  re-raise a broken plugin's error instead of warning.
``CONN_PLUGINS_BLOCK=a,b`` never load these entry point names or distributions.
``CONN_PLUGINS_ALLOW=a,b`` load only these (built-ins always load).
``CONN_DISABLE_PLUGIN_AUTOLOAD=1`` load no entry points at all (tests register by hand).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from conn import PLUGIN_API_VERSION, hookspecs
from conn.errors import PluginError

if TYPE_CHECKING:
    # Only for annotations: importing them loads pyarrow, which `conn --help` and
    # `conn plugins` do not need.
    from conn.destination import Destination
    from conn.profiles.matching import Matcher
    from conn.source import Source

GROUPS = {
    "sources": "conn.sources",
    "destinations": "conn.destinations",
    "transforms": "conn.transforms",
    "state_backends": "conn.state_backends",
    "matchers": "conn.matchers",
    "observers": "conn.observers",
}

#: Modules of the core that are plugins too, registered through the same path.
BUILTIN_PLUGINS = ("conn.builtins",)

#: The first-party distributions by (group, type): what the install hint for a missing
#: type names (a test compares it with the plugins' pyproject.toml entry points).
FIRST_PARTY: dict[tuple[str, str], str] = {
    ("sources", "duckdb"): "conn-source-duckdb",
    ("sources", "files"): "conn-source-files",
    ("sources", "singer"): "conn-source-singer",
    ("sources", "nats"): "conn-source-nats",
    ("sources", "rabbitmq"): "conn-source-rabbitmq",
    ("sources", "redis_streams"): "conn-source-redis-streams",
    ("sources", "postgres"): "conn-postgres",
    ("sources", "mysql"): "conn-mysql",
    ("sources", "sqlite"): "conn-sqlite",
    ("destinations", "postgres"): "conn-postgres",
    ("destinations", "mysql"): "conn-mysql",
    ("destinations", "sqlite"): "conn-sqlite",
    ("destinations", "braze"): "conn-destination-braze",
    ("destinations", "files"): "conn-destination-files",
    ("destinations", "hubspot"): "conn-destination-hubspot",
    ("destinations", "mailchimp"): "conn-destination-mailchimp",
    ("destinations", "meta_audiences"): "conn-destination-meta-audiences",
    ("destinations", "salesforce"): "conn-destination-salesforce",
    ("destinations", "singer"): "conn-destination-singer",
    ("destinations", "slack"): "conn-destination-slack",
    ("destinations", "webhook"): "conn-destination-webhook",
    ("matchers", "splink"): "conn-matcher-splink",
}


class _EntryPointIndex(Protocol):
    """What ``importlib.metadata.entry_points()`` returns: ``SelectableGroups`` on
    Python 3.11, ``EntryPoints`` from 3.12 on; conn only selects a group from it."""

    def select(self, *, group: str) -> Iterable[metadata.EntryPoint]: ...


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the others still work."""


@dataclass
class PluginInfo:
    """What ``conn plugins`` shows for one loaded plugin module."""

    name: str
    group: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(var: str) -> set[str]:
    return {_norm(x) for x in os.environ.get(var, "").split(",") if x.strip()}


def _strict() -> bool:
    return os.environ.get("CONN_PLUGINS_STRICT", "").lower() not in ("", "0", "false", "no")


def api_compatible(required: str, provided: str = PLUGIN_API_VERSION) -> bool:
    """True when a plugin requiring API ``required`` runs on a core providing ``provided``."""
    rmaj, _, rmin = str(required).partition(".")
    pmaj, _, pmin = provided.partition(".")
    return rmaj == pmaj and int(rmin or 0) <= int(pmin or 0)


class Registry:
    """Loads plugins on demand and holds what they registered."""

    def __init__(self, *, autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager("conn")
        self.pm.add_hookspecs(hookspecs)
        if os.environ.get("CONN_TRACE"):
            self.pm.trace.root.setwriter(lambda m: print(m, end="", file=sys.stderr))
            self.pm.enable_tracing()
        if autoload is None:
            autoload = not os.environ.get("CONN_DISABLE_PLUGIN_AUTOLOAD")
        self.autoload = autoload
        self._all_eps: _EntryPointIndex | None = None
        self.sources: dict[str, type[Source]] = {}
        self.destinations: dict[str, type[Destination]] = {}
        self.transforms: dict[str, Callable[..., Any]] = {}
        self.state_backends: dict[str, Callable[..., Any]] = {}
        self.matchers: dict[str, type[Matcher]] = {}
        self.origin: dict[tuple[str, str], PluginInfo] = {}
        self.plugins: list[PluginInfo] = []
        self._seen_eps: set[tuple[str, str]] = set()
        self._seen_dists: dict[tuple[str, str], str] = {}
        for mod in BUILTIN_PLUGINS:
            self.add_module(importlib.import_module(mod), PluginInfo(mod, "builtin", mod, "conn"))

    # --- registration ---------------------------------------------------------------

    def add_module(self, module: ModuleType | object, info: PluginInfo | None = None) -> None:
        """Register a module (or object) of hookimpls, then collect what it registers."""
        name = getattr(module, "__name__", None) or type(module).__name__
        info = info or PluginInfo(name, "manual", name)
        required = getattr(module, "CONN_PLUGIN_API", None)
        if required is not None and not api_compatible(str(required)):
            raise PluginError(
                f"plugin {info.name!r} ({info.distribution or info.module}) requires conn "
                f"plugin API {required}, this conn provides {PLUGIN_API_VERSION}; "
                f"upgrade conn or install a matching version of the plugin"
            )
        if self.pm.is_registered(module):
            return
        self.pm.register(module, name=f"{info.group}:{info.name}:{id(module)}")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(module)
            raise PluginError(
                f"plugin {info.name!r} ({info.module}) implements a hook conn does not "
                f"know: {exc}. Hooks: {', '.join(self.hook_names())}"
            ) from exc
        info.hooks = sorted(
            impl_name for impl_name in dir(module)
            if impl_name in self.hook_names()
        )
        self._collect(module, info)
        self.plugins.append(info)

    def hook_names(self) -> list[str]:
        return sorted(n for n in dir(hookspecs) if isinstance(
            getattr(getattr(hookspecs, n), "conn_spec", None), dict))

    def _collect(self, module: object, info: PluginInfo) -> None:
        def reg_connector(kind: str, table: dict[str, Any]) -> Callable[..., None]:
            def register(cls: type, name: str | None = None) -> None:
                key = name or getattr(cls, "name", "")
                if not key:
                    raise PluginError(f"plugin {info.name!r} registered a {kind} without a name")
                if key in table and table[key] is not cls:
                    prev = self.origin.get((kind, key))
                    warnings.warn(
                        f"{kind} {key!r} from {info.distribution or info.module} ignored: "
                        f"already provided by {prev.distribution if prev else 'another plugin'}",
                        PluginWarning, stacklevel=2,
                    )
                    return
                table[key] = cls
                self.origin[(kind, key)] = info
                info.provides.append(f"{kind[:-1]}:{key}")
            return register

        def reg_named(kind: str, table: dict[str, Any]) -> Callable[..., None]:
            def register(name: str, obj: Any) -> None:
                if name in table and table[name] is not obj:
                    warnings.warn(f"{kind} {name!r} registered twice; keeping the first",
                                  PluginWarning, stacklevel=2)
                    return
                table[name] = obj
                self.origin[(kind, name)] = info
                info.provides.append(f"{kind[:-1]}:{name}")
            return register

        calls = {
            "register_sources": reg_connector("sources", self.sources),
            "register_destinations": reg_connector("destinations", self.destinations),
            "register_transforms": reg_named("transforms", self.transforms),
            "register_state_backends": reg_named("state_backends", self.state_backends),
            "register_matchers": reg_named("matchers", self.matchers),
        }
        for hook, register in calls.items():
            impl = getattr(module, hook, None)
            if impl is not None and callable(impl):
                impl(register=register)

    # --- discovery ------------------------------------------------------------------

    def _entry_points(self, group: str) -> list[metadata.EntryPoint]:
        allow, block = _env_list("CONN_PLUGINS_ALLOW"), _env_list("CONN_PLUGINS_BLOCK")
        out, seen = [], set()
        if self._all_eps is None:
            # One scan of the installed distributions serves every group (each
            # entry_points(group=...) call rescans them all: ~7-10 ms apiece).
            self._all_eps = metadata.entry_points()
        for ep in self._all_eps.select(group=group):
            dist = _norm(ep.dist.name) if ep.dist else ""
            # The same distribution reached twice (symlinked site-packages) counts once.
            if (ep.name, dist) in seen:
                continue
            seen.add((ep.name, dist))
            if block & {_norm(ep.name), dist}:
                continue
            if allow and not allow & {_norm(ep.name), dist}:
                continue
            out.append(ep)
        return out

    def load(self, kind: str, names: Iterable[str] | None = None) -> None:
        """Load the entry points of group ``kind`` named in ``names`` (all when None)."""
        if not self.autoload:
            return
        group = GROUPS[kind]
        wanted = None if names is None else set(names)
        for ep in self._entry_points(group):
            if wanted is not None and ep.name not in wanted:
                continue
            key = (group, ep.name)
            if key in self._seen_eps:
                continue
            self._seen_eps.add(key)
            dist = ep.dist.name if ep.dist else None
            info = PluginInfo(ep.name, kind, ep.value, dist, ep.dist.version if ep.dist else None)
            try:
                module = ep.load()
                self.add_module(module, info)
            except Exception as exc:
                info.error = f"{type(exc).__name__}: {exc}"
                self.plugins.append(info)
                if _strict():
                    raise PluginError(
                        f"plugin {ep.name!r} from {dist or ep.value} failed to load: {exc}"
                    ) from exc
                warnings.warn(
                    f"plugin {ep.name!r} from {dist or ep.value} failed to load and is "
                    f"skipped: {info.error} (set CONN_PLUGINS_STRICT=1 to see the traceback)",
                    PluginWarning, stacklevel=2,
                )

    def load_all(self) -> None:
        for kind in GROUPS:
            self.load(kind)

    # --- lookup ---------------------------------------------------------------------

    def _get(self, kind: str, table: dict[str, Any], name: str) -> Any:
        if name not in table:
            self.load(kind, [name])
        if name not in table:
            self.load(kind)
        if name not in table:
            broken = [p for p in self.plugins if p.name == name and p.error]
            if broken:
                raise PluginError(f"{kind[:-1]} plugin {name!r} is installed but broken: "
                                  f"{broken[0].error}")
            known = ", ".join(sorted(table)) or "none installed"
            raise PluginError(f"no {kind[:-1]} plugin of type {name!r} (known: {known}); "
                              f"{self.install_hint(kind, name)}")
        return table[name]

    def install_hint(self, kind: str, name: str) -> str:
        """What to install for a missing type: the first-party distribution providing
        it; else, when the name is a type of another kind (a source named where a
        destination is wanted), which; else a plugin providing the type."""
        what = kind[:-1].replace("_", " ")
        dist = FIRST_PARTY.get((kind, name))
        if dist:
            return f"install the package {dist!r}"
        for other in ("sources", "destinations"):
            if other == kind:
                continue
            eps = [ep for ep in self._entry_points(GROUPS[other]) if ep.name == name]
            provider = (eps[0].dist.name if eps and eps[0].dist else None) or \
                FIRST_PARTY.get((other, name))
            if eps or provider:
                origin = f" (from {provider})" if provider else ""
                return (f"{name!r} is a {other[:-1]} type{origin}, not a {what}; "
                        f"install a plugin providing the {what} type {name!r}")
        return (f"install a plugin providing the {what} type {name!r} "
                f"(`conn plugins` lists what is installed)")

    def source_class(self, name: str) -> type[Source]:
        """The class registered for the source type ``name`` (loading its plugin)."""
        return self._get("sources", self.sources, name)

    def destination_class(self, name: str) -> type[Destination]:
        """The class registered for the destination type ``name`` (loading its plugin)."""
        return self._get("destinations", self.destinations, name)

    def transform(self, name: str) -> Callable[..., Any]:
        return self._get("transforms", self.transforms, name)

    def state_backend(self, name: str) -> Callable[..., Any]:
        return self._get("state_backends", self.state_backends, name)

    def matcher(self, name: str) -> type[Matcher]:
        """The class registered for the matcher ``name`` (loading its plugin)."""
        return self._get("matchers", self.matchers, name)

    def load_observers(self) -> None:
        self.load("observers")

    @property
    def hook(self) -> Any:
        return self.pm.hook


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (created on first use)."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry(registry: Registry | None = None) -> Registry:
    """Replace the process-wide registry (tests)."""
    global _registry
    _registry = registry or Registry()
    return _registry
