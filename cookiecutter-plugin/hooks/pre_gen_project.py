"""Validate the answers before anything is written."""

import re
import sys

CHECKS = {
    "type_name": ("{{ cookiecutter.type_name }}", r"^[a-z][a-z0-9_]*$"),
    "package_name": ("{{ cookiecutter.package_name }}", r"^[a-z][a-z0-9_]*$"),
    "class_name": ("{{ cookiecutter.class_name }}", r"^[A-Z][A-Za-z0-9]*$"),
    "project_slug": ("{{ cookiecutter.project_slug }}", r"^[a-z][a-z0-9-]*$"),
}

bad = [f"{key}={value!r} (must match {pattern})" for key, (value, pattern) in CHECKS.items()
       if not re.match(pattern, value)]
if bad:
    sys.stderr.write("invalid plugin name: " + "; ".join(bad) +
                     "\nuse letters, digits, spaces and dashes in the plugin name\n")
    sys.exit(1)

# Where conn comes from: a version, an absolute path (a checkout or a wheel) or a URL.
CONN_SOURCE = "{{ cookiecutter.conn_source }}".strip()
if not re.match(r"^([<>=!~][=<>~]?\s*[0-9][\w.*+!-]*(\s*,\s*[<>=!~][=<>~]?\s*[0-9][\w.*+!-]*)*"
                r"|[0-9][\w.+!-]*|/\S+|(git\+)?(https?|ssh|file):\S+)$", CONN_SOURCE):
    sys.stderr.write(f"invalid conn_source {CONN_SOURCE!r}: give a version (>=0.1, 0.1.0), an "
                     "absolute path to a conn checkout or wheel, or a URL "
                     "(git+https://github.com/...)\n")
    sys.exit(1)
