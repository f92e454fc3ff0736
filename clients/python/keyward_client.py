"""A client for `keyward serve` (see docs/openapi.json), standard library
only: HTTP/1.1 over the service's Unix socket or a loopback TCP port.

    client = KeywardClient(socket_path="/run/keyward/keyward.sock", token=token)
    dsn = client.values(client.render("orders-db"))["dsn"]
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["Destination", "KeywardClient", "KeywardError", "Output", "Rendered"]


@dataclass(frozen=True)
class Destination:
    """Where a destination output sends the platform, as keyward checked it
    against the operator's pins: connect here, nowhere else."""

    scheme: str | None
    host: str
    port: int | None


@dataclass(frozen=True)
class Output:
    """One output of a render; `value` is `****` if sensitive and the token
    sees masked values only. `kind` is `destination`, `credential` or
    `setting`."""

    name: str
    value: str
    sensitive: bool
    kind: str = "setting"
    parsed_destination: Destination | None = None

    @staticmethod
    def from_answer(answer: dict[str, Any]) -> "Output":
        to = answer.get("destination")
        return Output(
            name=answer["name"],
            value=answer["value"],
            sensitive=answer["sensitive"],
            kind=answer.get("kind", "setting"),
            parsed_destination=Destination(to["scheme"], to["host"], to["port"]) if to else None,
        )

    def destination(self) -> Destination | None:
        """For a destination output, where it connects (scheme, host, port)."""
        return self.parsed_destination

    def __repr__(self) -> str:
        value = "****" if self.sensitive else self.value
        return f"Output(name={self.name!r}, value={value!r}, sensitive={self.sensitive}, kind={self.kind!r})"


@dataclass(frozen=True)
class Rendered:
    """What a render answers."""

    connector: str
    outputs: list[Output]

    def destinations(self) -> dict[str, Destination]:
        """The destination outputs by name, with where each connects: a
        platform connects only to these (or to its own configuration)."""
        return {o.name: o.parsed_destination for o in self.outputs if o.parsed_destination is not None}


class KeywardError(Exception):
    """An error the service answered, with its stable code; for
    `render_error`, the configuration field and column at fault."""

    def __init__(self, status: int, code: str, message: str,
                 field: str | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.column = column


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("keyward", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class KeywardClient:
    """`keyward serve`, from Python."""

    def __init__(self, *, token: str, socket_path: str | None = None,
                 url: str | None = None, timeout: float = 30.0) -> None:
        if not socket_path and not url:
            raise ValueError("KeywardClient: give socket_path or url")
        self._token = token
        self._socket_path = socket_path
        self._url = urlsplit(url) if url else None
        self._timeout = timeout

    def render(self, connector: str, fields: dict[str, str] | None = None) -> Rendered:
        """Renders a connector with its configured fields, or with `fields`."""
        body = None if fields is None else {"fields": fields}
        answer = self._request("POST", f"/v1/connectors/{quote(connector, safe='')}/render", body)
        return Rendered(answer["connector"], [Output.from_answer(o) for o in answer["outputs"]])

    @staticmethod
    def values(rendered: Rendered) -> dict[str, str]:
        """The outputs of a render by name."""
        return {o.name: o.value for o in rendered.outputs}

    def invalidate(self, connector: str, reference: str) -> None:
        """Drops the cached copy of one secret after its credentials were
        rejected (`{{ secrets.db }}`); rate-limited by the service."""
        self._request("POST", f"/v1/connectors/{quote(connector, safe='')}/invalidate",
                      {"reference": reference})

    def references(self, connector: str) -> list[str]:
        """The references a connector may use, ready to paste."""
        return self._request("GET", f"/v1/connectors/{quote(connector, safe='')}/references")["references"]

    def connectors(self) -> list[dict[str, Any]]:
        """The configured connectors with their `describe` output."""
        return self._request("GET", "/v1/connectors")["connectors"]

    def check(self) -> dict[str, Any]:
        """"Test connection": the backend, then per connector."""
        return self._request("GET", "/v1/check")

    def _connection(self) -> http.client.HTTPConnection:
        if self._socket_path:
            return _UnixConnection(self._socket_path, self._timeout)
        assert self._url is not None
        return http.client.HTTPConnection(self._url.hostname or "127.0.0.1", self._url.port,
                                          timeout=self._timeout)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        connection = self._connection()
        try:
            connection.request(method, path, body=payload, headers={
                "x-keyward-token": self._token,
                "content-type": "application/json",
            })
            response = connection.getresponse()
            text = response.read().decode("utf-8")
        finally:
            connection.close()
        try:
            answer = json.loads(text)
        except ValueError:
            raise KeywardError(response.status, "bad_response",
                               "the service answered something other than JSON") from None
        if 200 <= response.status < 300:
            return answer
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise KeywardError(response.status, error.get("code", "unknown"),
                           error.get("message", f"HTTP {response.status}"),
                           error.get("field"), error.get("column"))
