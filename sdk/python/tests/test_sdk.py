"""The SDK natively: composition, encodings (as the host applies them),
field errors, and the test double's host rules."""

import pathlib

import pytest

from keyward_connector import egress
from keyward_connector import Connector, ConnectorInfo, Field, Output, RenderError, Text, log, reveal
from keyward_connector.testing import TestSecrets

HOSTILE = 'p@ss:w/rd#%?&"é'


class Url(Connector):
    @classmethod
    def info(cls):
        return ConnectorInfo("url", "0.1.0", "A URL", [Field("password", "The password", required=True)])

    @classmethod
    def render(cls, fields):
        port = fields.parse("port", int, "port number") or 5432
        log("info", f"rendering with {fields.require('password')!r}")
        url = Text.concat(["scheme://user:", fields.require("password").percent(), f"@h:{port}"])
        return [Output.destination("url", url), Output("port", str(port))]


def test_sealed_values_compose_and_make_outputs_sensitive():
    secrets = TestSecrets(egress=["h:5432"])
    rendered = secrets.render(Url, {"password": secrets.seal(HOSTILE)})
    assert rendered["url"].value == "scheme://user:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@h:5432"
    assert rendered["url"].sensitive
    assert rendered["port"] == rendered["port"].__class__("5432", False)
    assert HOSTILE not in repr(rendered["url"])
    # The connector saw a handle, never the value, even in its own logs.
    assert secrets.logs == [("info", "rendering with <sealed>")]


def test_plain_text_is_encoded_at_once_as_the_host_would():
    text = Text.plain(HOSTILE)
    assert text.percent().as_plain() == "p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9"
    assert Text.plain("a b+c").form().as_plain() == "a+b%2Bc"
    assert Text.plain('q"\n\x01').json_string().as_plain() == '"q\\"\\n\\u0001"'
    assert Text.plain("hi?").base64().as_plain() == "aGk/"
    assert Text.plain("hi?").base64url().as_plain() == "aGk_"
    assert Text.plain("::1").uri_host().as_plain() == "[::1]"
    assert Text.plain("[::1]").uri_host().as_plain() == "[::1]"
    assert Text.plain("db host").uri_host().as_plain() == "db%20host"


def test_errors_name_the_field_never_the_value():
    secrets = TestSecrets()
    with pytest.raises(RenderError) as missing:
        secrets.render(Url, {})
    assert str(missing.value) == "field `password`: required field is not configured"
    with pytest.raises(RenderError) as bad:
        secrets.render(Url, {"password": secrets.seal("x"), "port": "eighty"})
    assert str(bad.value) == "field `port`: not a valid port number"
    assert "eighty" not in str(bad.value)


def test_a_secret_in_a_field_that_must_be_read_is_refused():
    class Reads(Connector):
        @classmethod
        def render(cls, fields):
            return [Output("mode", fields.plain("mode") or "")]

    secrets = TestSecrets()
    with pytest.raises(RenderError, match="field `mode`: holds a secret"):
        secrets.render(Reads, {"mode": secrets.seal("x")})


def test_reveal_needs_the_grant_and_makes_every_output_sensitive():
    class Signs(Connector):
        @classmethod
        def render(cls, fields):
            key = reveal(fields.require("key"))
            return [Output("signature", key[::-1]), Output("note", "plain")]

    secrets = TestSecrets()
    with pytest.raises(RenderError, match="reveal is not granted"):
        secrets.render(Signs, {"key": secrets.seal("abc")})
    rendered = secrets.render(Signs, {"key": secrets.seal("abc", reveal=True)})
    assert rendered["signature"].value == "cba"
    assert rendered["note"].sensitive


def test_an_unexpected_exception_is_a_render_error():
    class Buggy(Connector):
        @classmethod
        def render(cls, fields):
            return [Output("x", str(1 / 0))]

    with pytest.raises(RenderError, match="ZeroDivisionError"):
        TestSecrets().render(Buggy, {})


def test_more_outputs_than_the_host_allows_are_refused_as_the_host_would():
    class Many(Connector):
        @classmethod
        def render(cls, fields):
            return [Output.setting(f"out-{i}", "x") for i in range(65)]

    with pytest.raises(RenderError, match=r"returned 65 outputs; at most 64 are allowed \(sandbox.max_outputs\)"):
        TestSecrets().render(Many, {})


class Api(Connector):
    @classmethod
    def info(cls):
        return ConnectorInfo(
            "api",
            "0.1.0",
            "An API",
            [Field("base_url", "Base URL", required=True, destination="url"), Field("token", "Token")],
        )

    @classmethod
    def render(cls, fields):
        return [
            Output.destination("base_url", fields.require("base_url")),
            Output.secret("authorization", "Bearer " + fields.require("token")),
        ]


def test_the_host_egress_check_runs_in_the_test_double():
    secrets = TestSecrets()
    ok = secrets.render(Api, {"base_url": "https://api.example.com/", "token": secrets.seal("t")})
    assert ok["base_url"].kind == "destination" and ok["authorization"].kind == "credential"
    with pytest.raises(RenderError) as moved:
        secrets.render(Api, {"base_url": secrets.seal("t") + ".attacker.example", "token": "x"})
    assert "egress refused: output `base_url`" in str(moved.value)
    pinless = TestSecrets(egress=[])
    with pytest.raises(RenderError, match="no destination pins"):
        pinless.render(Api, {"base_url": "https://a.example/", "token": pinless.seal("t")})


def _vectors():
    path = pathlib.Path(__file__).resolve().parents[3] / "tests" / "vectors" / "egress.tsv"
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            yield line.split("\t")


@pytest.mark.parametrize("pins,kind,value,secret,expected", list(_vectors()))
def test_the_shared_egress_vectors(pins, kind, value, secret, expected):
    fields, explicit = [], []
    for item in pins.split(";"):
        if item == "-":
            continue
        part, text = item.split("=", 1)
        if part == "egress":
            explicit.append(text)
        else:
            fields.append((part, part, text, True))
    checked_pins = egress.Pins.from_fields(fields)
    if explicit:
        checked_pins.with_explicit(explicit)
    at = value.find(secret) if secret != "-" else -1
    marks = [(at, at + len(secret))] if at >= 0 else []
    try:
        egress.check([("out", kind, value, marks)], checked_pins)
        verdict = "ok"
    except egress.Refusal as e:
        verdict = e.message
    if expected == "ok":
        assert verdict == "ok", verdict
    else:
        assert expected in verdict, verdict
