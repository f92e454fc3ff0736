"""What a connector declares and returns: its fields, its outputs, the
errors that point at the author's input, and the base class."""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Callable, Iterator, TypeVar

from .text import Text, TextLike

T = TypeVar("T")

#: The parts of a destination a field may name (``None``: not a destination).
DESTINATION_PARTS = (None, "url", "host", "port", "resource")
#: What an output may be.
OUTPUT_KINDS = ("destination", "credential", "setting")


@dataclass
class Field:
    """One configuration field the connector takes."""

    name: str
    description: str
    required: bool = False
    #: The field should hold a secret (outputs holding one are sensitive anyway).
    sensitive: bool = False
    #: The template used when the field is not configured.
    default: str | None = None
    #: The whole field may be a bare Secrets Manager ARN (ECS ``valueFrom``).
    secret_reference: bool = False
    #: The part of a destination the field names: ``"url"``, ``"host"``,
    #: ``"port"`` or ``"resource"`` (a database, a bucket). What the
    #: operator configures there is where the host lets secrets go.
    destination: str | None = None

    def __post_init__(self) -> None:
        if self.destination not in DESTINATION_PARTS:
            raise ValueError(f"field `{self.name}`: destination must be one of {DESTINATION_PARTS[1:]}")


@dataclass
class ConnectorInfo:
    """What ``describe`` returns."""

    name: str
    version: str
    description: str
    fields: list[Field] = dataclass_field(default_factory=list)
    #: Run on every render, with the real clocks and random. By default the
    #: host keeps the outputs of a configuration's first render as a render
    #: plan and evaluates it with the current secrets from then on, without
    #: running the connector; a recorded render sees a fixed clock and a
    #: random stream seeded from its configuration.
    run_every_render: bool = False


class RenderError(Exception):
    """A render failed because of the author's input: names the field and,
    where known, the 1-based column of its template. Never holds a value."""

    def __init__(self, message: str, field: str | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.column = column

    def __str__(self) -> str:
        if self.field is not None and self.column is not None:
            return f"field `{self.field}`, column {self.column}: {self.message}"
        if self.field is not None:
            return f"field `{self.field}`: {self.message}"
        return self.message


@dataclass
class Output:
    """One output of a render (a URL, a header, a client setting). The host
    marks it sensitive anyway if it holds a sealed piece."""

    name: str
    value: Text
    sensitive: bool = False
    #: ``"destination"`` (where the platform connects: checked against the
    #: operator's pins), ``"credential"`` (what it sends) or ``"setting"``
    #: (anything else; may not hold secret material).
    kind: str = "setting"

    def __init__(self, name: str, value: TextLike, sensitive: bool = False, kind: str = "setting"):
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"output `{name}`: kind must be one of {OUTPUT_KINDS}")
        self.name = name
        self.value = Text.of(value)
        self.sensitive = sensitive
        self.kind = kind

    @staticmethod
    def destination(name: str, value: TextLike) -> "Output":
        """Where the platform connects: a URL, a DSN, a host, a port."""
        return Output(name, value, kind="destination")

    @staticmethod
    def credential(name: str, value: TextLike) -> "Output":
        """What the platform sends: a password, a key, a header value."""
        return Output(name, value, kind="credential")

    @staticmethod
    def setting(name: str, value: TextLike) -> "Output":
        """Anything else: a region, a flag. It may not hold secret material."""
        return Output(name, value, kind="setting")

    @staticmethod
    def secret(name: str, value: TextLike) -> "Output":
        """A credential marked sensitive whatever it holds."""
        return Output(name, value, sensitive=True, kind="credential")


class Fields:
    """The fields of one render, as the host expanded them."""

    def __init__(self, values: dict[str, Text]):
        self._values = values

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str) -> Text | None:
        """A configured (or defaulted) field's value."""
        return self._values.get(name)

    def require(self, name: str) -> Text:
        """A field the connector cannot do without."""
        value = self._values.get(name)
        if value is None:
            raise RenderError("required field is not configured", field=name)
        return value

    def plain(self, name: str) -> str | None:
        """The text of a field the connector must read (a port, a mode). A
        field holding a secret is an error naming the field."""
        value = self._values.get(name)
        if value is None:
            return None
        text = value.as_plain()
        if text is None:
            raise RenderError(
                "holds a secret, which this connector cannot read; configure it in plain "
                "text or mark the secret public in the connector's policy",
                field=name,
            )
        return text

    def parse(self, name: str, parse: Callable[[str], T], what: str) -> T | None:
        """Parses a plain field (``parse(name, int, "port")``); the error
        names the field, not the value."""
        text = self.plain(name)
        if text is None:
            return None
        try:
            return parse(text.strip())
        except (TypeError, ValueError):
            raise RenderError(f"not a valid {what}", field=name) from None

    def __repr__(self) -> str:
        return f"Fields({sorted(self._values)})"


class Connector:
    """Subclass this: ``info()`` declares the fields, ``render(fields)``
    returns the outputs (raise :class:`RenderError` for bad input)."""

    @classmethod
    def info(cls) -> ConnectorInfo:
        raise NotImplementedError

    @classmethod
    def render(cls, fields: Fields) -> list[Output]:
        raise NotImplementedError
