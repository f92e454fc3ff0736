"""A native stand-in for the host, so a connector is unit-tested with
pytest, without building a component.

``TestSecrets`` plays the host's part of a render: it seals values into
handles the connector cannot read, answers ``log``, ``reveal``,
``invalidate`` and ``list_secrets``, and evaluates the connector's outputs
as the host does (an output holding a sealed piece, and every output of a
render that revealed, is sensitive)::

    secrets = TestSecrets()
    rendered = secrets.render(Redis, {
        "host": "cache.internal",
        "password": secrets.seal("p@ss:w/rd"),
    })
    assert rendered["url"].value == "redis://default:p%40ss%3Aw%2Frd@cache.internal:6379/0"
    assert rendered["url"].sensitive

Templates (``{{ secrets.db.password }}``) are the host's to expand: a test
hands the connector what the host would, plain text and sealed values."""

from __future__ import annotations

from dataclasses import dataclass

from . import egress, host
from .connector import Connector, RenderError
from .export import fields_from_pieces, run_render
from .text import Text, TextLike, evaluate_marked


@dataclass
class Rendered:
    """One evaluated output."""

    value: str
    sensitive: bool
    kind: str = "setting"

    def __repr__(self) -> str:
        shown = "****" if self.sensitive else repr(self.value)
        return f"Rendered(value={shown}, sensitive={self.sensitive}, kind={self.kind!r})"


def _pieces(name: str, text: Text) -> list[tuple]:
    """A field's value as the host hands it over: plain and sealed pieces."""
    kind, value = text._kind, text._value
    if kind in ("plain", "sealed"):
        return [(kind, value)]
    if kind == "concat":
        return [piece for part in value for piece in _pieces(name, part)]
    raise ValueError(f"field `{name}`: the host hands fields over unencoded")


#: The host's default bound on the outputs of one render.
MAX_OUTPUTS = 64


class TestSecrets:
    """The host, for unit tests: sealed values, logs, reveal grants."""

    __test__ = False  # not a pytest test class

    def __init__(self, names: list[str] | None = None, egress: list[str] | None = None):
        """``names``: what ``list_secrets`` answers; ``egress``: the
        operator's explicit destinations, which replace the pins the host
        derives from the connector's destination fields."""
        self._values: dict[int, tuple[str, bool]] = {}
        self._names = list(names or [])
        self._egress = egress
        self.logs: list[tuple[str, str]] = []
        self.invalidated: list[str] = []
        self.revealed = False

    def seal(self, value: str, reveal: bool = False) -> Text:
        """``value`` as the host hands a secret to the connector: sealed;
        ``reveal=True`` if the operator granted reveal on it."""
        handle = len(self._values) + 1
        self._values[handle] = (value, reveal)
        return Text._sealed(handle)

    def render(self, connector: type[Connector], fields: dict[str, TextLike]) -> dict[str, Rendered]:
        """Renders ``connector`` with ``fields`` (plain ``str`` or sealed
        :class:`Text`); raises the connector's :class:`RenderError`."""
        self.revealed = False
        flat = [(name, _pieces(name, Text.of(value))) for name, value in fields.items()]
        previous, host._double = host._double, self
        try:
            outputs, error = run_render(connector, fields_from_pieces(flat))
        finally:
            host._double = previous
        if error is not None:
            raise error
        if len(outputs) > MAX_OUTPUTS:
            raise RenderError(
                f"the connector returned {len(outputs)} outputs; at most {MAX_OUTPUTS} are allowed "
                "(sandbox.max_outputs)"
            )
        rendered, checked = {}, []
        for output in outputs:
            value, marks = evaluate_marked(output.value.nodes(), lambda h: self._values[h][0])
            rendered[output.name] = Rendered(
                value=value,
                sensitive=output.sensitive or bool(marks) or self.revealed,
                kind=output.kind,
            )
            checked.append((output.name, output.kind, value, marks))
        # The host's egress check, on the pins it would derive.
        try:
            declared = connector.info().fields
        except NotImplementedError:
            declared = []
        pin_fields = []
        for f in declared:
            if f.destination is None:
                continue
            given = fields.get(f.name)
            text = evaluate_marked(Text.of(given).nodes(), lambda h: self._values[h][0])[0] if given is not None else f.default
            pin_fields.append((f.name, f.destination, text, given is not None))
        pins = egress.Pins.from_fields(pin_fields)
        if self._egress is not None:
            pins.with_explicit(self._egress)
        try:
            egress.check(checked, pins)
        except egress.Refusal as e:
            raise RenderError(f"egress refused: output `{checked[e.output][0]}`: {e.message}") from None
        return rendered

    # The host's imports, as the SDK calls them natively.

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def list_secrets(self) -> list[str]:
        return list(self._names)

    def invalidate(self, reference: str) -> bool:
        self.invalidated.append(reference)
        return True

    def reveal(self, handle: int) -> str:
        if handle not in self._values:
            raise RenderError("not a sealed value of this render")
        value, granted = self._values[handle]
        if not granted:
            raise RenderError("reveal is not granted to this connector for this secret")
        self.revealed = True
        return value
