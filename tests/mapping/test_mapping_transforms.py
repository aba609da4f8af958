"""Every built-in transform, and registering one through the plugin hook."""

from __future__ import annotations

import datetime as dt
import hashlib

import pyarrow as pa
import pytest
from conn.hookspecs import hookimpl
from conn.mapping.transforms import BUILTIN_TRANSFORMS
from conn.plugins import Registry

S = pa.array(["  Hello World ", None])


@pytest.mark.parametrize(("name", "arr", "opts", "out"), [
    ("trim", S, {}, ["Hello World", None]),
    ("lower", S, {}, ["  hello world ", None]),
    ("upper", S, {}, ["  HELLO WORLD ", None]),
    ("title", pa.array(["ann lee"]), {}, ["Ann Lee"]),
    ("digits", pa.array(["+1 (650) 555"]), {}, ["1650555"]),
    ("replace", pa.array(["a-b-c"]), {"pattern": "-", "replacement": "+"}, ["a+b+c"]),
    ("replace", pa.array(["a-b"]), {"pattern": "-"}, ["ab"]),
    ("slice", pa.array(["abcdef"]), {"start": 1, "stop": 3}, ["bc"]),
    ("nullif_empty", pa.array(["", "  ", "x", None]), {}, [None, None, "x", None]),
    ("to_string", pa.array([1, None]), {}, ["1", None]),
    ("round", pa.array([1.25, 2.5]), {"ndigits": 1}, [1.2, 2.5]),
    ("round", pa.array([2.5, 3.5]), {}, [2.0, 4.0]),
    ("abs", pa.array([-2, 3]), {}, [2, 3]),
    ("parse_date", pa.array(["03/02/1990", "x"]), {"format": "%d/%m/%Y"},
     [dt.datetime(1990, 2, 3), None]),
    ("normalize", pa.array([" A@B.COM "]), {"kind": "email"}, ["a@b.com"]),
    ("normalize", pa.array(["(650) 555-1234"]), {"kind": "phone", "country_code": "1"},
     ["16505551234"]),
    ("sha256", pa.array(["abc", None]), {},
     [hashlib.sha256(b"abc").hexdigest(), None]),
    ("md5", pa.array(["abc"]), {}, [hashlib.md5(b"abc").hexdigest()]),
    ("mask", pa.array(["a@b.com"]), {"kind": "email"}, ["a***@b.com"]),
    ("mask", pa.array(["123456"]), {}, ["***56"]),
])
def test_builtin(name: str, arr: pa.Array, opts: dict, out: list) -> None:
    assert BUILTIN_TRANSFORMS[name](arr, **opts).to_pylist() == out


def test_every_builtin_is_tested_and_registered() -> None:
    reg = Registry(autoload=False)
    for name in BUILTIN_TRANSFORMS:
        assert reg.transform(name) is BUILTIN_TRANSFORMS[name]


class ReversePlugin:
    @hookimpl
    def register_transforms(self, register):  # type: ignore[no-untyped-def]
        import pyarrow.compute as pc

        register("reverse", lambda arr, **_: pc.utf8_reverse(arr))


def test_plugin_transform_through_hook() -> None:
    reg = Registry(autoload=False)
    reg.add_module(ReversePlugin())
    assert reg.transform("reverse")(pa.array(["abc"])).to_pylist() == ["cba"]
