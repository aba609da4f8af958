"""The message template (conn_destination_slack.template): ``{field}`` substitution with
Slack escaping, nothing else interpreted."""

from __future__ import annotations

import pytest
from conn_destination_slack import template
from hypothesis import given
from hypothesis import strategies as st


def test_render_literal_braces_and_nulls() -> None:
    assert template.render("{{x}} {x}: {y}", {"x": 1.0, "y": None}) == "{x} 1: "
    assert template.render("<!here> {a}", {"a": "<@U1>"}) == "<!here> &lt;@U1&gt;"
    assert template.fields("{a} and {b}{{c}}") == ["a", "b"]
    with pytest.raises(template.MissingField):
        template.render("{nope}", {})


@pytest.mark.parametrize("bad", ["{", "}", "a {} b", "x {y", "{a}}"])
def test_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(template.TemplateError):
        template.parse(bad)


def test_no_format_spec_or_attribute_lookup() -> None:
    # str.format would read attributes or indexes; here the whole text is a field name.
    with pytest.raises(template.MissingField):
        template.render("{x.__class__}", {"x": "v"})
    with pytest.raises(template.MissingField):
        template.render("{x:>10}", {"x": "v"})


@given(st.text())
def test_values_never_inject_markup(value: str) -> None:
    """A substituted value comes back exactly after unescaping, and holds no ``<`` or
    ``>`` of its own: it cannot become a link or a mention."""
    out = template.render("[{v}]", {"v": value})
    assert "<" not in out and ">" not in out
    inner = out[1:-1]
    assert inner.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == value


@given(st.lists(st.sampled_from(["a", "{{", "}}", "{f}", " "]), max_size=8))
def test_parse_round_trips(pieces: list[str]) -> None:
    """Literal braces and fields of any well-formed template come back as written."""
    text = "".join(pieces)
    want = "".join({"{{": "{", "}}": "}", "{f}": "F"}.get(p, p) for p in pieces)
    assert template.render(text, {"f": "F"}) == want
