"""What both conformance suites share: the context, the helpers, the common checks."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conn import secrets
from conn.errors import CheckFailed, ConfigError

if TYPE_CHECKING:
    from conn.plugin_base import Connector
    from conn.testing.http import FaultServer

#: Top-level modules an entry point module must not import at load time. Extend per
#: plugin with ``heavy_modules=`` (e.g. your vendor SDK or database driver).
HEAVY_MODULES: tuple[str, ...] = (
    "pyarrow", "duckdb", "httpx", "numpy", "pandas", "polars", "requests", "sqlalchemy",
    "psycopg", "psycopg2", "adbc_driver_manager", "adbc_driver_postgresql", "boto3",
    "botocore", "google.cloud", "snowflake", "singer_sdk", "vcr", "orjson",
)

#: Strings the unicode check writes into every string field.
UNICODE_SAMPLES = ("Zoë Ünïcødé", "東京 🚀 emoji", "quote \" comma , newline \n tab \t",
                   "right-to-left עברית", "")

ConfigArg = Mapping[str, Any] | Callable[["SuiteContext"], Mapping[str, Any]]


@dataclass
class SuiteContext:
    """What a ``config`` callable receives: a fresh folder, the fault server when the
    suite was built with ``server=``, and the pytest ``request`` (use
    ``ctx.fixture("name")`` to reach the plugin's own fixtures, e.g. a database)."""

    tmp_path: Path
    server: FaultServer | None = None
    request: pytest.FixtureRequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fixture(self, name: str) -> Any:
        """The value of the pytest fixture ``name`` (from the plugin's conftest)."""
        assert self.request is not None, "no pytest request in this context"
        return self.request.getfixturevalue(name)


# --- helpers shared by both suites ---------------------------------------------------------


def _resolve(value: Any, ctx: SuiteContext) -> Any:
    return value(ctx) if callable(value) else value


def _entry_module(cls: type, group: str, explicit: str | None) -> str | None:
    """The module named by the entry point that provides ``cls`` (by type name)."""
    if explicit:
        return explicit
    top = cls.__module__.split(".")[0]
    for ep in metadata.entry_points(group=group):
        if ep.name == getattr(cls, "name", None) and ep.value.split(".")[0].split(":")[0] == top:
            return ep.value.split(":")[0]
    return None


def imported_heavy_modules(module: str, heavy: Iterable[str] = HEAVY_MODULES,
                           python: str | None = None) -> list[str]:
    """Import ``module`` in a fresh interpreter and return the heavy modules it pulled in
    beyond what ``import conn`` itself loads (the plugin answers only for its own)."""
    code = (
        "import json, sys\n"
        "import conn\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run([python or sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"importing {module} failed:\n{proc.stderr[-2000:]}")
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    return sorted(h for h in heavy if h in loaded or any(m.startswith(h + ".") for m in loaded))


def _secret_values(cls: type, config: Mapping[str, Any], extra: Iterable[str]) -> list[str]:
    found: list[str] = [s for s in extra if s]
    for path in secrets.secret_paths(getattr(cls, "config_schema", {}) or {}):
        node: Any = config
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, str) and len(node) >= 4:
            found.append(node)
    return found


def _assert_no_secrets(texts: Iterable[str], values: Sequence[str], where: str) -> None:
    for text in texts:
        leaked = [v[:3] + "…" for v in values if v in text]
        assert not leaked, f"secret value(s) starting with {leaked} appear in {where}: " \
                           f"{secrets.MASK.join(text.split(leaked[0][:3]))[:300]!r}"


def _build(base: type, name: str, attrs: dict[str, Any], xfail: Mapping[str, str],
           skip: Iterable[str]) -> type:
    cls = type(name, (base,), attrs)
    known = {n for n in dir(base) if n.startswith("test_")}
    for test in [*xfail, *skip]:
        if test not in known:
            raise ValueError(f"unknown check {test!r} in xfail/skip; checks: {sorted(known)}")
    for test, reason in xfail.items():
        fn = getattr(base, test)

        @functools.wraps(fn)
        def wrapped(self: Any, *args: Any, _fn: Callable[..., Any] = fn, **kwargs: Any) -> None:
            _fn(self, *args, **kwargs)

        setattr(cls, test, pytest.mark.xfail(strict=True, reason=reason)(wrapped))
    for test in skip:
        fn = getattr(base, test)

        @functools.wraps(fn)
        def skipped(self: Any, *args: Any, _t: str = test, **kwargs: Any) -> None:
            pytest.skip(f"{_t} disabled by the plugin's suite (skip=)")

        setattr(cls, test, skipped)
    return cls


class _Common:
    """Checks every connector passes. Attributes are set by the suite builders."""

    plugin_class: type[Connector]
    config: ConfigArg
    bad_config: ConfigArg | None = None
    failing_config: ConfigArg | None = None
    secret_values: tuple[str, ...] = ()
    heavy_modules: tuple[str, ...] = HEAVY_MODULES
    entry_module: str | None = None
    group: str = ""
    server: bool | Callable[[FaultServer], Any] = False

    @pytest.fixture
    def ctx(self, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
        """A :class:`SuiteContext` with a fresh folder (and the fault server)."""
        secrets.clear()
        if not self.server:
            yield SuiteContext(tmp_path, request=request)
            secrets.clear()
            return
        from conn.testing.http import FaultServer

        with FaultServer(seed=0) as srv:
            if callable(self.server):
                self.server(srv)
            yield SuiteContext(tmp_path, srv, request)
        secrets.clear()

    def make(self, ctx: SuiteContext, config: ConfigArg | None = None) -> Any:
        """Validate the config (as the runtime does) and build the connector."""
        cfg = dict(_resolve(self.config if config is None else config, ctx))
        self.plugin_class.validate_config(cfg)
        secrets.register_config_secrets(cfg, self.plugin_class.config_schema)
        return self.plugin_class.create(cfg, instance="conformance", project_dir=ctx.tmp_path)

    def test_config_schema_is_valid(self, ctx: SuiteContext) -> None:
        """``config_schema`` is a valid JSON Schema of an object; ``name`` is set."""
        import jsonschema

        cls = self.plugin_class
        assert cls.name, f"{cls.__name__}.name is empty: it is the 'type' in conn.yml"
        schema = cls.config_schema
        jsonschema.validators.validator_for(schema).check_schema(schema)
        assert schema.get("type") == "object", "config_schema must describe an object"

    def test_good_config_validates(self, ctx: SuiteContext) -> None:
        """The suite's ``config`` passes validation."""
        self.plugin_class.validate_config(dict(_resolve(self.config, ctx)))

    def test_bad_config_rejected_with_path(self, ctx: SuiteContext) -> None:
        """``bad_config`` raises a ConfigError whose message names the bad path."""
        if self.bad_config is None:
            pytest.skip("no bad_config given")
        with pytest.raises(ConfigError) as err:
            self.plugin_class.validate_config(dict(_resolve(self.bad_config, ctx)))
        errors = getattr(err.value, "errors", None) or [err.value]
        for e in errors:
            assert e.path, f"config error without a path: {e}"
            assert e.path in str(e), f"config error does not name its path: {e}"

    def test_check_passes(self, ctx: SuiteContext) -> None:
        """``check()`` succeeds with the good config."""
        with self.make(ctx) as conn:
            conn.check()

    def test_check_fails_clearly(self, ctx: SuiteContext) -> None:
        """``check()`` with ``failing_config`` raises CheckFailed (or ConfigError) with a
        reason, not a bare library exception."""
        if self.failing_config is None:
            pytest.skip("no failing_config given")
        with pytest.raises((CheckFailed, ConfigError)) as err, \
                self.make(ctx, self.failing_config) as conn:
            conn.check()
        assert str(err.value).strip(), "check() failed without a reason"

    def exercise(self, ctx: SuiteContext) -> None:
        """Run the connector's normal duties (the secret check watches them). Each suite
        below defines it for its kind of connector."""
        raise NotImplementedError(f"{type(self).__name__} must define exercise()")

    def test_no_secrets_in_logs_or_errors(self, ctx: SuiteContext,
                                          caplog: pytest.LogCaptureFixture) -> None:
        """Secret config values never appear in log records, exception messages or the
        connector's repr, including when ``check()`` fails."""
        cfg = dict(_resolve(self.config, ctx))
        values = _secret_values(self.plugin_class, cfg, self.secret_values)
        if self.failing_config is not None:
            values += _secret_values(self.plugin_class, dict(_resolve(self.failing_config,
                                                                      ctx)), ())
        if not values:
            pytest.skip("no secret fields in the config (mark them \"secret\": true)")
        texts: list[str] = []
        with caplog.at_level(logging.DEBUG):
            conn = self.make(ctx)
            texts.append(repr(conn))
            try:
                self.exercise(ctx)
            except Exception as exc:  # the exception text is what is checked
                texts.append(f"{exc!s} {exc!r}")
            if self.failing_config is not None:
                try:
                    with self.make(ctx, self.failing_config) as bad:
                        bad.check()
                except Exception as exc:
                    texts.append(f"{exc!s} {exc!r}")
                    cause = exc.__cause__
                    if cause is not None:
                        texts.append(str(cause))
            conn.close()
        texts += [r.getMessage() for r in caplog.records]
        _assert_no_secrets(texts, values, "logs, errors or repr")

    def test_entry_module_imports_nothing_heavy(self, ctx: SuiteContext) -> None:
        """Importing the plugin's entry point module (in a fresh interpreter) imports none
        of the heavy modules; import them inside the class module or the methods."""
        module = _entry_module(self.plugin_class, self.group, self.entry_module)
        if module is None:
            pytest.skip(f"no {self.group} entry point named {self.plugin_class.name!r} is "
                        f"installed (pass entry_module=)")
        heavy = imported_heavy_modules(module, self.heavy_modules)
        assert not heavy, (f"entry module {module} imports heavy module(s) {heavy} at load "
                           f"time; import them where the connector class is used")




def _static(value: Any) -> Any:
    """Store callables as staticmethods so they are not bound to the test instance."""
    return staticmethod(value) if callable(value) else value


def _caller_module() -> str:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", __name__))
