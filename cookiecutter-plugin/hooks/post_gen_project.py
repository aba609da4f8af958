"""Keep only the files of the chosen kind: a source, an HTTP destination or a
database/file destination. Alternatives are rendered side by side and pruned here."""

import shutil
from pathlib import Path

STYLE = "{{ cookiecutter.__style }}"
PACKAGE = Path("{{ cookiecutter.package_name }}")
TESTS = Path("tests")

KEEP = {
    "source": {PACKAGE / "source.py": None,
               TESTS / "test_conformance_source.py": TESTS / "test_conformance.py"},
    "http": {PACKAGE / "destination_http.py": PACKAGE / "destination.py",
             TESTS / "test_conformance_http.py": TESTS / "test_conformance.py"},
    "files": {PACKAGE / "destination_files.py": PACKAGE / "destination.py",
              TESTS / "test_conformance_files.py": TESTS / "test_conformance.py"},
}
ONLY = {  # paths that exist for one style only
    TESTS / "data": "source",
    TESTS / "cassettes": "http",
    TESTS / "test_cassettes.py": "http",
    TESTS / "test_vendor_spec.py": "http",
    PACKAGE / "objects": "destination",
}

for style, files in KEEP.items():
    for path, target in files.items():
        if style != STYLE:
            path.unlink()
        elif target is not None:
            path.rename(target)

for path, style in ONLY.items():
    wanted = STYLE in ("http", "files") if style == "destination" else STYLE == style
    if not wanted:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
