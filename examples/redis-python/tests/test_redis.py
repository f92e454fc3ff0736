"""The Redis connector natively, against the SDK's test double."""

import pytest

from app import Redis
from keyward_connector import RenderError
from keyward_connector.testing import TestSecrets

HOSTILE = 'p@ss:w/rd#%?&"é'


def defaults(**fields):
    return {"port": "6379", "username": "default", "db": "0", "tls": "false", **fields}


def test_the_url_carries_the_sealed_password_encoded():
    secrets = TestSecrets()
    rendered = secrets.render(
        Redis, defaults(host="cache.internal", username="app", password=secrets.seal(HOSTILE))
    )
    url = rendered["url"]
    assert url.value == "redis://app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@cache.internal:6379/0"
    assert url.sensitive


def test_tls_ipv6_and_a_database():
    secrets = TestSecrets()
    rendered = secrets.render(
        Redis, defaults(host="::1", password=secrets.seal("x"), tls="true", db="3")
    )
    assert rendered["url"].value == "rediss://default:x@[::1]:6379/3"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("port", "0", "field `port`: must be between 1 and 65535"),
        ("port", "redis", "field `port`: not a valid port number"),
        ("db", "-1", "field `db`: must not be negative"),
        ("tls", "maybe", "field `tls`: must be true or false"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    secrets = TestSecrets()
    with pytest.raises(RenderError) as error:
        secrets.render(Redis, defaults(host="h", password=secrets.seal("x"), **{field: value}))
    assert str(error.value) == message
