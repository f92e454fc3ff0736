"""The encodings of the ``keyward:connector`` contract, byte for byte as the
host applies them (``template/src/encode.rs``). Applied here to plain text
only: sealed text is encoded by the host, after ``render`` returns."""

import base64 as _b64

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

#: The contract's encoding names, in the WIT enum's order.
NAMES = ("percent", "form", "json-string", "base64", "base64url", "uri-host")


def _percent_byte(b: int) -> str:
    return chr(b) if b in _UNRESERVED else f"%{b:02X}"


def percent(text: str) -> str:
    """RFC 3986 percent-encoding of every byte outside ``A-Z a-z 0-9 - . _ ~``."""
    return "".join(_percent_byte(b) for b in text.encode())


def form(text: str) -> str:
    """``application/x-www-form-urlencoded``: a space becomes ``+``."""
    return "".join("+" if b == 0x20 else _percent_byte(b) for b in text.encode())


def json_string(text: str) -> str:
    """A JSON string literal, quotes included."""
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def base64(text: str) -> str:
    """Standard base64 with padding."""
    return _b64.b64encode(text.encode()).decode()


def base64url(text: str) -> str:
    """URL-safe base64 without padding."""
    return _b64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def uri_host(text: str) -> str:
    """A URI host: an IPv6 literal in brackets, anything else percent-encoded."""
    if ":" in text and not text.startswith("["):
        return f"[{text}]"
    if text.startswith("[") and text.endswith("]"):
        return text
    return percent(text)


_APPLY = {
    "percent": percent,
    "form": form,
    "json-string": json_string,
    "base64": base64,
    "base64url": base64url,
    "uri-host": uri_host,
}


def apply(encoding: str, text: str) -> str:
    """Applies the encoding named ``encoding`` (one of :data:`NAMES`)."""
    return _APPLY[encoding](text)
