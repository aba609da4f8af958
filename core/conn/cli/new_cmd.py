"""``conn new plugin``: scaffold a plugin package from conn's cookiecutter template.

cookiecutter is the engine but not a runtime dependency of conn: it comes with the
optional extra ``conn[new]``. The template ships inside the wheel (``conn/cookiecutter-
plugin``) and is read from the repository in a development checkout.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from conn.errors import ConfigError, ConnError

KINDS = ("source", "destination")
DESTINATION_STYLES = ("http", "database_or_file")
AUTH_STYLES = ("none", "bearer", "basic", "oauth2")


class MissingExtra(ConnError):
    """An optional dependency of a command is not installed."""

    exit_code = 6


@functools.cache
def template_dir() -> Path:
    """The cookiecutter template: inside the installed wheel, or the repository's."""
    here = Path(__file__).resolve().parent.parent  # the conn package
    for candidate in (here / "cookiecutter-plugin", here.parent.parent / "cookiecutter-plugin"):
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise ConnError("conn's plugin template (cookiecutter-plugin/) is missing from this "
                    "installation; reinstall conn")


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is None:
        return None
    v = value.strip().lower().replace("-", "_")
    aliases = {"database": "database_or_file", "file": "database_or_file",
               "files": "database_or_file", "db": "database_or_file", "api": "http",
               "token": "bearer", "oauth": "oauth2"}
    v = aliases.get(v, v)
    if v not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(allowed)} (got {value!r})")
    return v


def default_conn_source() -> str | None:
    """Where the generated package gets conn when ``--conn-source`` is not given: this
    conn's checkout when it runs from one (conn is not on PyPI), else the template's
    default (a version)."""
    here = Path(__file__).resolve().parent.parent  # the conn package
    root = here.parent.parent
    if (root / "pyproject.toml").is_file() and (root / "cookiecutter-plugin").is_dir():
        return str(root)
    return None


def conn_source(value: str | None) -> str | None:
    """``--conn-source``: a version stays as it is, a local path (a checkout or a wheel)
    becomes absolute, a URL stays as it is."""
    if value is None:
        return default_conn_source()
    v = value.strip()
    if "://" in v or v[:1] in "<>=!~" or v[:1].isdigit():
        return v
    path = Path(v).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"--conn-source {value!r}: no such file or folder (give a version, "
                          "a conn checkout or wheel, or a VCS URL such as git+https://...)")
    return str(path)


def answers(*, name: str | None, kind: str | None, destination_style: str | None,
            auth: str | None, author: str | None,
            conn_from: str | None = None) -> dict[str, Any]:
    """The template context for the options given (unset ones keep the template's
    defaults, or are asked interactively). Impossible combinations are normalised: a
    source has no destination style or auth, a database/file destination no auth."""
    kind = _choice(kind, KINDS, "--kind")
    style = _choice(destination_style, DESTINATION_STYLES, "--destination-style")
    auth = _choice(auth, AUTH_STYLES, "--auth")
    if kind == "source" and (style or (auth and auth != "none")):
        raise ConfigError("--destination-style and --auth apply to destinations only")
    if style == "database_or_file" and auth and auth != "none":
        raise ConfigError("--auth applies to HTTP destinations only")
    ctx: dict[str, Any] = {}
    if name is not None:
        if not name.strip() or not any(c.isalpha() for c in name):
            raise ConfigError(f"--name must contain letters (got {name!r})")
        ctx["plugin_name"] = name.strip()
    for key, value in (("kind", kind), ("destination_style", style), ("auth", auth),
                       ("author", author), ("conn_source", conn_from)):
        if value is not None:
            ctx[key] = value
    if kind == "source" or style == "database_or_file":
        ctx.setdefault("auth", "none")
    if kind == "source":
        ctx.setdefault("destination_style", "database_or_file")
    return ctx


def new_plugin(*, name: str | None, kind: str | None, destination_style: str | None,
               auth: str | None, author: str | None, output_dir: Path, no_input: bool,
               overwrite: bool = False, conn_from: str | None = None) -> Path:
    """Render the template into ``output_dir``; return the new package's folder."""
    try:
        from cookiecutter.exceptions import CookiecutterException, OutputDirExistsException
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise MissingExtra("'conn new plugin' needs cookiecutter, which is not installed: "
                           "run pip install 'conn[new]'") from None
    ctx = answers(name=name, kind=kind, destination_style=destination_style, auth=auth,
                  author=author, conn_from=conn_source(conn_from))
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        project = cookiecutter(str(template_dir()), no_input=no_input, extra_context=ctx,
                               output_dir=str(output_dir), overwrite_if_exists=overwrite)
    except OutputDirExistsException as exc:
        raise ConfigError(f"{exc}; choose another --name or --output-dir") from None
    except CookiecutterException as exc:
        raise ConnError(f"the plugin template failed: {exc}") from None
    return Path(project)


def run_new_plugin(**options: Any) -> None:
    """CLI body of ``conn new plugin``: render, then say what to do next."""
    from conn.cli.output import info

    path = new_plugin(**options)
    info(f"created {path}")
    info("next steps:\n"
         f"  cd {path}\n"
         "  python -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'\n"
         "  pytest -q && ruff check .\n"
         "then adapt the connector class and go through the checklist in its README.md "
         "(the guide: docs/plugin-authoring.md in conn's repository).")
