"""Text that may hold sealed pieces: the values of secret references, which
the connector composes but cannot read.

A :class:`Text` is plain (a ``str`` the connector may read) or a
composition of plain and sealed pieces with encodings, which the host
evaluates after ``render`` returns. Encoding plain text encodes it at once;
encoding text with a sealed piece records the encoding for the host."""

from __future__ import annotations

from typing import Iterable, Union

from . import encode

#: What the SDK's functions take where text is expected.
TextLike = Union["Text", str]


class Text:
    """Plain text, a sealed handle, or a composition of them."""

    __slots__ = ("_kind", "_value")

    def __init__(self, kind: str, value) -> None:
        # ("plain", str) | ("sealed", int) | ("concat", tuple[Text, ...])
        # | ("encode", (str, Text))
        self._kind = kind
        self._value = value

    @staticmethod
    def plain(text: str) -> "Text":
        """Text the connector may read."""
        return Text("plain", str(text))

    @staticmethod
    def _sealed(handle: int) -> "Text":
        return Text("sealed", int(handle))

    @staticmethod
    def of(text: TextLike) -> "Text":
        """``text`` as :class:`Text` (a ``str`` is plain)."""
        return text if isinstance(text, Text) else Text.plain(text)

    @staticmethod
    def concat(pieces: Iterable[TextLike]) -> "Text":
        """The pieces one after the other; plain if every piece is."""
        parts = [Text.of(p) for p in pieces]
        if all(p._kind == "plain" for p in parts):
            return Text.plain("".join(p._value for p in parts))
        return Text("concat", tuple(parts))

    def __add__(self, other: TextLike) -> "Text":
        return Text.concat([self, other])

    def __radd__(self, other: TextLike) -> "Text":
        return Text.concat([other, self])

    def as_plain(self) -> str | None:
        """The text, if it holds no sealed piece; else ``None``."""
        return self._value if self._kind == "plain" else None

    def is_sealed(self) -> bool:
        """Whether the text holds a sealed piece."""
        return self._kind != "plain"

    def _encoded(self, encoding: str) -> "Text":
        if self._kind == "plain":
            return Text.plain(encode.apply(encoding, self._value))
        return Text("encode", (encoding, self))

    def percent(self) -> "Text":
        """RFC 3986 percent-encoded (a URL's userinfo, path segment, query)."""
        return self._encoded("percent")

    def form(self) -> "Text":
        """``application/x-www-form-urlencoded`` (a space becomes ``+``)."""
        return self._encoded("form")

    def json_string(self) -> "Text":
        """A JSON string literal, quotes included."""
        return self._encoded("json-string")

    def base64(self) -> "Text":
        """Standard base64 with padding."""
        return self._encoded("base64")

    def base64url(self) -> "Text":
        """URL-safe base64 without padding."""
        return self._encoded("base64url")

    def uri_host(self) -> "Text":
        """A URI host: an IPv6 literal in brackets, anything else percent-encoded."""
        return self._encoded("uri-host")

    def nodes(self) -> list[tuple]:
        """The composition as the contract's nodes, its value last:
        ``("plain", str)``, ``("sealed", handle)``, ``("concat", [index])``,
        ``("encode", encoding, index)``."""
        out: list[tuple] = []
        self._push(out)
        return out

    def _push(self, out: list[tuple]) -> int:
        kind, value = self._kind, self._value
        if kind == "plain":
            out.append(("plain", value))
        elif kind == "sealed":
            out.append(("sealed", value))
        elif kind == "concat":
            indexes = [part._push(out) for part in value]
            out.append(("concat", indexes))
        else:
            encoding, inner = value
            index = inner._push(out)
            out.append(("encode", encoding, index))
        return len(out) - 1

    def __repr__(self) -> str:
        # Never a value: plain text is shown, sealed pieces are not.
        if self._kind == "plain":
            return f"Text({self._value!r})"
        if self._kind == "sealed":
            return "<sealed>"
        if self._kind == "concat":
            return " + ".join(repr(p) for p in self._value)
        encoding, inner = self._value
        return f"{encoding}({inner!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self._kind == "plain" and self._value == other
        if isinstance(other, Text):
            return self._kind == other._kind and self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._kind, self._value))


def evaluate_marked(nodes: list[tuple], sealed) -> tuple[str, list[tuple[int, int]]]:
    """:func:`evaluate`, also answering which ranges of the value came from
    sealed pieces, as the host marks them (an encoding of marked text is
    marked whole)."""
    values: list[str] = []
    marks: list[list[tuple[int, int]]] = []
    for node in nodes:
        kind = node[0]
        if kind == "plain":
            values.append(node[1])
            marks.append([])
        elif kind == "sealed":
            text = sealed(node[1])
            values.append(text)
            marks.append([(0, len(text))] if text else [])
        elif kind == "concat":
            text, marked = "", []
            for i in node[1]:
                for a, b in marks[i]:
                    a, b = a + len(text), b + len(text)
                    if marked and marked[-1][1] == a:
                        marked[-1] = (marked[-1][0], b)
                    else:
                        marked.append((a, b))
                text += values[i]
            values.append(text)
            marks.append(marked)
        else:
            text = encode.apply(node[1], values[node[2]])
            values.append(text)
            marks.append([(0, len(text))] if marks[node[2]] and text else [])
    return (values[-1], marks[-1]) if values else ("", [])


def evaluate(nodes: list[tuple], sealed) -> str:
    """A composition's value, ``sealed(handle)`` giving each sealed piece's
    text (the native test double's and ``reveal``'s half of what the host
    does)."""
    values: list[str] = []
    for node in nodes:
        kind = node[0]
        if kind == "plain":
            values.append(node[1])
        elif kind == "sealed":
            values.append(sealed(node[1]))
        elif kind == "concat":
            values.append("".join(values[i] for i in node[1]))
        else:
            values.append(encode.apply(node[1], values[node[2]]))
    return values[-1] if values else ""
