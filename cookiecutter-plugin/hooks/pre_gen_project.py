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
