"""The host's egress check, natively, so a connector's unit test fails
where the host would refuse the render: every secret goes only to a
destination the operator configured, and only where a credential belongs.

A port of ``template/src/destination.rs`` and ``template/src/egress.rs``;
``tests/vectors/egress.tsv`` holds the cases all three implementations
must agree on."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

SPECIAL_SCHEMES = ("http", "https", "ws", "wss", "ftp", "file")
DEFAULT_PORTS = {
    "http": 80, "ws": 80, "https": 443, "wss": 443, "ftp": 21, "postgres": 5432,
    "postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379, "rediss": 6379,
    "mongodb": 27017, "amqp": 5672, "amqps": 5671, "sqlserver": 1433,
}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")
_LABEL = re.compile(r"[A-Za-z0-9_-]+\Z")


class DestinationError(ValueError):
    """The part at fault and what is wrong, never the text."""

    def __init__(self, part: str, why: str):
        super().__init__(f"its {part} {why}")
        self.part = part
        self.why = why


def default_port(scheme: str | None) -> int | None:
    if scheme is None:
        return None
    return DEFAULT_PORTS.get(scheme.rsplit(":", 1)[-1])


def looks_like_url(text: str) -> bool:
    """Whether a client could take ``text`` for a URL (see the Rust doc)."""
    cleaned = "".join(c for c in text.strip("".join(chr(i) for i in range(33))) if c not in "\t\n\r")[:256]
    at, first = 0, None
    while True:
        m = re.match(r"[A-Za-z][A-Za-z0-9+.-]*", cleaned[at:])
        if not m or cleaned[at + m.end():at + m.end() + 1] != ":":
            return False
        first = first or m.group(0).lower()
        at += m.end() + 1
        nxt = cleaned[at:at + 1]
        if nxt in ("/", "\\"):
            return True
        if first in SPECIAL_SCHEMES:
            return True
        if not (nxt.isascii() and nxt.isalpha()):
            return False


@dataclass
class Destination:
    scheme: str | None
    host: str
    port: int | None
    spans: dict = field(default_factory=dict)

    def effective_port(self) -> int | None:
        return self.port if self.port is not None else default_port(self.scheme)

    def query_params(self, text: str):
        span = self.spans.get("query")
        if span is None:
            return
        offset = span[0]
        for pair in text[span[0]:span[1]].split("&"):
            eq = pair.find("=")
            if eq >= 0:
                yield pair[:eq], (offset + eq + 1, offset + len(pair))
            else:
                yield pair, (offset + len(pair), offset + len(pair))
            offset += len(pair) + 1


def _check_bytes(text: str) -> None:
    for c in text:
        if c == "\\":
            raise DestinationError("text", "holds a backslash")
        if c <= " " or c == "\x7f":
            raise DestinationError("text", "holds whitespace or a control character")
        if not c.isascii():
            raise DestinationError("text", "holds non-ASCII text")
        if c in '"<>^`{|}':
            raise DestinationError("text", "holds a character URLs do not allow")


def _check_percent(text: str, part: str) -> None:
    i = 0
    while i < len(text):
        if text[i] == "%":
            if not re.match(r"[0-9A-Fa-f]{2}", text[i + 1:i + 3]):
                raise DestinationError(part, "holds a `%` that is not an escape")
            i += 3
        else:
            i += 1


def normalize_host(host: str) -> str:
    if not host:
        raise DestinationError("host", "is empty")
    if host.startswith("["):
        if not host.endswith("]"):
            raise DestinationError("host", "opens `[` without closing it")
        inner = host[1:-1]
        if "%" in inner:
            raise DestinationError("host", "is an IPv6 address with a zone id")
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise DestinationError("host", "is not an IPv6 address") from None
    if "%" in host:
        raise DestinationError("host", "is percent-encoded")
    if host.endswith("."):
        raise DestinationError("host", "ends with a dot")
    if len(host) > 253:
        raise DestinationError("host", "is longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not label:
            raise DestinationError("host", "has an empty label")
        if len(label) > 63:
            raise DestinationError("host", "has a label longer than 63 characters")
        if not _LABEL.match(label):
            raise DestinationError("host", "holds a character host names do not have")
    last = labels[-1]
    if last.isdigit() or last[:2].lower() == "0x":
        canonical = len(labels) == 4 and all(
            l.isdigit() and (len(l) == 1 or not l.startswith("0")) and int(l) <= 255 for l in labels
        )
        if not canonical:
            raise DestinationError("host", "is a numeric address that is not a dotted quad")
    return host.lower()


def _hostport(text: str, start: int, end: int):
    hp = text[start:end]
    if hp.startswith("["):
        close = hp.find("]")
        if close < 0:
            raise DestinationError("host", "opens `[` without closing it")
        after = hp[close + 1:close + 2]
        if after == "":
            host_len, port_at = close + 1, None
        elif after == ":":
            host_len, port_at = close + 1, close + 2
        else:
            raise DestinationError("host", "has text after its `]`")
    else:
        colon = hp.find(":")
        host_len, port_at = (colon, colon + 1) if colon >= 0 else (len(hp), None)
    host = normalize_host(hp[:host_len])
    port = port_span = None
    if port_at is not None:
        digits = hp[port_at:]
        if not digits:
            raise DestinationError("port", "is empty")
        if len(digits) > 5 or not digits.isdigit() or int(digits) > 65535:
            raise DestinationError("port", "is not a number from 0 to 65535")
        port, port_span = int(digits), (start + port_at, end)
    return host, (start, start + host_len), port, port_span


def parse_url(text: str) -> Destination:
    _check_bytes(text)
    end = text.find("://")
    if end < 0:
        raise DestinationError("scheme", "is not followed by `://`")
    scheme = text[:end]
    if not scheme or not all(_SCHEME.match(s) for s in scheme.split(":")):
        raise DestinationError("scheme", "is not a scheme")
    a = end + 3
    rest = text[a:]
    m = re.search(r"[/?#]", rest)
    alen = m.start() if m else len(rest)
    authority = rest[:alen]
    spans = {"scheme": (0, a)}
    at = authority.find("@")
    hp_start = a
    if at >= 0:
        if "@" in authority[at + 1:]:
            raise DestinationError("authority", "holds more than one `@`")
        userinfo = authority[:at]
        if "[" in userinfo or "]" in userinfo:
            raise DestinationError("userinfo", "holds `[` or `]`")
        _check_percent(userinfo, "userinfo")
        spans["userinfo"] = (a, a + at)
        hp_start = a + at + 1
    hp_end = a + alen
    host, spans["host"], port, port_span = _hostport(text, hp_start, hp_end)
    if port_span:
        spans["port"] = port_span
    tail = text[hp_end:]
    m = re.search(r"[?#]", tail)
    plen = m.start() if m else len(tail)
    spans["path"] = (hp_end, hp_end + plen)
    path = text[hp_end:hp_end + plen]
    _check_percent(path, "path")
    for segment in path.split("/")[1:]:
        lower = segment.lower()
        if lower.replace("%2e", ".") in (".", ".."):
            raise DestinationError("path", "has a dot segment")
        if "%2f" in lower or "%5c" in lower:
            raise DestinationError("path", "holds an encoded slash or backslash")
    i = hp_end + plen
    if text[i:i + 1] == "?":
        q_end = text.find("#", i + 1)
        q_end = len(text) if q_end < 0 else q_end
        spans["query"] = (i + 1, q_end)
        _check_percent(text[i + 1:q_end], "query")
        i = q_end
    if text[i:i + 1] == "#":
        spans["fragment"] = (i + 1, len(text))
        _check_percent(text[i + 1:], "fragment")
        if "#" in text[i + 1:]:
            raise DestinationError("fragment", "holds a second `#`")
    return Destination(scheme.lower(), host, port, spans)


def parse_bare(text: str) -> Destination:
    _check_bytes(text)
    if any(c in text for c in "/?#@"):
        raise DestinationError("host", "is not a bare host or host and port")
    host, host_span, port, port_span = _hostport(text, 0, len(text))
    spans = {"host": host_span, "path": (len(text), len(text))}
    if port_span:
        spans["port"] = port_span
    return Destination(None, host, port, spans)


def parse(text: str) -> Destination:
    return parse_url(text) if looks_like_url(text) else parse_bare(text)


@dataclass
class Pin:
    scheme: str | None
    host: str
    port: int | None
    path_prefix: str = ""
    secret_params: tuple = ()

    def __repr__(self) -> str:  # the operator's values may be secrets
        return "Pin(****)"

    @staticmethod
    def of_url(d: Destination, text: str) -> "Pin":
        path = text[d.spans["path"][0]:d.spans["path"][1]]
        params = tuple(n for n, _ in d.query_params(text) if n)
        return Pin(d.scheme, d.host, d.effective_port(), "" if path == "/" else path, params)

    def matches_scheme(self, d: Destination) -> bool:
        return self.scheme is None or d.scheme is None or self.scheme == d.scheme

    def matches_port(self, d: Destination) -> bool:
        implied = default_port(d.scheme)
        port = d.port if d.port is not None else implied
        if self.port is not None:
            return port is None or port == self.port
        return d.port is None or d.port == implied

    def matches_path(self, d: Destination, text: str) -> bool:
        if not self.path_prefix or d.scheme is None:
            return True
        path = text[d.spans["path"][0]:d.spans["path"][1]]
        p = self.path_prefix
        return path in (p, p.rstrip("/")) or (
            path.startswith(p) and (p.endswith("/") or path[len(p):len(p) + 1] == "/")
        )


class Pins:
    """Where a render's secrets may go."""

    def __init__(self):
        self.pins: list[Pin] = []
        self.resources: list[str] = []
        self.destination_fields: list[str] = []
        self.fields: list[str] = []
        self.explicit: list[str] = []

    def __repr__(self) -> str:
        return f"Pins({len(self.pins)} pins, {len(self.resources)} resources)"

    @staticmethod
    def from_fields(fields) -> "Pins":
        """``fields``: (name, part, value or None, configured) tuples."""
        pins, hosts, ports = Pins(), [], []
        for name, part, value, configured in fields:
            pins.destination_fields.append(name)
            if not value or not (configured or part == "port"):
                continue
            try:
                if part == "url":
                    pins.pins.append(Pin.of_url(parse_url(value), value))
                elif part == "host":
                    hosts.append(_host_field(value))
                elif part == "port":
                    if not value.isdigit() or int(value) > 65535:
                        continue
                    ports.append(int(value))
                else:
                    pins.resources.append(value)
            except DestinationError:
                continue
            pins.fields.append(name)
        for host, own in hosts:
            for port in [own] if own is not None else (ports or [None]):
                pins.pins.append(Pin(None, host, port))
        return pins

    def with_explicit(self, entries: list[str], keep_fields: bool = False) -> "Pins":
        if not keep_fields:
            self.pins, self.resources, self.fields = [], [], []
        for i, entry in enumerate(entries):
            try:
                d = parse(entry)
            except DestinationError as e:
                raise ValueError(f"egress entry {i} (`{entry}`): {e}") from None
            self.pins.append(Pin.of_url(d, entry) if d.scheme else Pin(None, d.host, d.port))
        self.explicit = list(entries)
        return self

    def origin(self) -> str:
        parts = []
        if self.fields:
            parts.append("from fields " + ", ".join(f"`{f}`" for f in self.fields))
        if self.explicit:
            parts.append("egress " + ", ".join(f"`{e}`" for e in self.explicit))
        return "; ".join(parts) or "none"

    def empty(self) -> bool:
        return not self.pins and not self.resources


def _host_field(value: str):
    """``host``, ``host:port``, ``[v6]:port``, or an IPv6 address without brackets."""
    try:
        d = parse_bare(value)
        return d.host, d.port
    except DestinationError:
        try:
            return str(ipaddress.IPv6Address(value)), None
        except ValueError:
            raise DestinationError("host", "is not a host") from None


class Refusal(Exception):
    def __init__(self, output: int, message: str):
        super().__init__(message)
        self.output = output
        self.message = message


def check(outputs, pins: Pins) -> list:
    """``outputs``: (name, kind, value, marks) with marks a list of
    (start, end) ranges of secret material. Answers each output's
    :class:`Destination` (or None); raises :class:`Refusal`."""
    holds_secret = any(marks for _, _, _, marks in outputs)
    if holds_secret and pins.empty():
        first = next(i for i, o in enumerate(outputs) if o[3])
        raise Refusal(first, "it holds secret material but the connector has no destination pins: it "
                             "declares no destination field the operator configured, and no `egress` is set")
    verdicts = []
    for index, (name, kind, value, marks) in enumerate(outputs):
        url = looks_like_url(value)
        if not (url or name in pins.destination_fields or kind == "destination"):
            if kind == "setting" and marks:
                raise Refusal(index, "it is a setting but holds secret material; only credential and "
                                     "destination outputs may")
            verdicts.append(None)
            continue
        verdicts.append(_check_destination(index, value, marks, url, pins, holds_secret))
    return verdicts


def _missed(index: int, part: str, pins: Pins) -> Refusal:
    return Refusal(index, f"its {part} matches none of the connector's destination pins ({pins.origin()})")


def _check_destination(index, value, marks, url, pins, holds_secret):
    if not url and value in pins.resources:
        return None
    if not url and value.isdigit():
        if not holds_secret or any(p.port is not None and p.port == int(value) for p in pins.pins):
            return None
        raise _missed(index, "port", pins)
    try:
        d = parse_url(value) if url else parse_bare(value)
    except DestinationError as e:
        if not holds_secret:
            return None
        raise Refusal(index, f"it is a destination, and its {e.part} {e.why} "
                             "(clients could read it differently)") from None
    if not holds_secret:
        return d
    order = ["host", "scheme", "port", "path"]
    best = "host"
    for pin in (p for p in pins.pins if p.host == d.host):
        fault = ("scheme" if not pin.matches_scheme(d) else "port" if not pin.matches_port(d)
                 else "path" if not pin.matches_path(d, value) else None)
        if fault is None:
            _placement(index, value, marks, d, pin, pins)
            return d
        if order.index(fault) > order.index(best):
            best = fault
    raise _missed(index, best, pins)


def _placement(index, text, marks, d, pin, pins):
    from . import encode

    s = d.spans
    allowed = [s[k] for k in ("userinfo", "host", "port") if k in s]
    path = s["path"]
    if pin.path_prefix:
        allowed.append((path[0], path[0] + min(len(pin.path_prefix), path[1] - path[0])))
    at = path[0]
    for segment in text[path[0]:path[1]].split("/"):
        if segment and any(r == segment or encode.apply("percent", r) == segment for r in pins.resources):
            allowed.append((at, at + len(segment)))
        at += len(segment) + 1
    for name, span in d.query_params(text):
        if name in pin.secret_params:
            allowed.append(span)
    for start, end in marks:
        at = start
        while at < end:
            cover = next((b for a, b in allowed if a <= at < b), None)
            if cover is None:
                part = ("scheme" if "scheme" in s and s["scheme"][0] <= at < s["scheme"][1]
                        else "path" if path[0] <= at < path[1]
                        else "query (a parameter the pin does not name)" if "query" in s and s["query"][0] <= at < s["query"][1]
                        else "fragment" if "fragment" in s and s["fragment"][0] <= at < s["fragment"][1]
                        else "delimiters")
                raise Refusal(index, f"secret material stands in its {part}, where only the operator's "
                                     f"own value may (pins {pins.origin()})")
            at = cover
