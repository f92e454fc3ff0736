"""A Redis connector in Python: renders a ``redis://`` (or ``rediss://``)
URL for redis-py, ioredis or redis-rs from a host, an ACL user and a sealed
password. The password is percent-encoded by the host; this code never
sees it."""

from keyward_connector import Connector, ConnectorInfo, Field, Output, RenderError, Text, export


class Redis(Connector):
    @classmethod
    def info(cls):
        return ConnectorInfo(
            name="redis",
            version="0.1.0",
            description="A redis:// URL with ACL credentials",
            fields=[
                Field("host", "Server host name or address", required=True, destination="host"),
                Field("port", "TCP port", default="6379", destination="port"),
                Field("username", "ACL user", default="default"),
                Field("password", "The ACL user's password", required=True, sensitive=True),
                Field("db", "Database number", default="0"),
                Field("tls", "true for rediss:// (TLS)", default="false"),
            ],
        )

    @classmethod
    def render(cls, fields):
        port = fields.parse("port", int, "port number")
        if not 0 < port < 65536:
            raise RenderError("must be between 1 and 65535", field="port")
        db = fields.parse("db", int, "database number")
        if db < 0:
            raise RenderError("must not be negative", field="db")
        tls = fields.plain("tls")
        if tls not in ("true", "false"):
            raise RenderError("must be true or false", field="tls")
        scheme = "rediss" if tls == "true" else "redis"
        url = Text.concat(
            [
                f"{scheme}://",
                fields.require("username").percent(),
                ":",
                fields.require("password").percent(),
                "@",
                fields.require("host").uri_host(),
                f":{port}/{db}",
            ]
        )
        return [Output.destination("url", url)]


WitWorld = export(Redis)
