"""The host's imports: ``log``, ``reveal``, ``invalidate``, ``list_secrets``.

Inside a component they call keyward through the generated bindings. The
bindings are imported here, at the top level, because componentize-py
initialises a connector's modules when it builds the component and a module
imported later, inside ``render``, would not be ready. Outside a component
(in unit tests) the calls go to the active :class:`~keyward_connector.testing.TestSecrets`."""

from __future__ import annotations

from .connector import RenderError
from .text import Text, evaluate

try:  # Inside a component built by componentize-py.
    from componentize_py_types import Err
    from wit_world.imports import log as _wit_log
    from wit_world.imports import secrets as _wit_secrets

    IN_COMPONENT = True
except ImportError:  # Natively: the test double answers.
    IN_COMPONENT = False

#: The native stand-in for the host (set by ``TestSecrets``).
_double = None


def _native():
    if _double is None:
        raise RuntimeError(
            "no keyward host: outside a component, render through keyward_connector.testing.TestSecrets"
        )
    return _double


_LEVELS = ("trace", "debug", "info", "warn", "error")


def log(level: str, message: str) -> None:
    """Writes a line to the host's log (escaped; revealed values masked).
    ``level`` is one of trace, debug, info, warn, error. Standard output and
    standard error go nowhere in a component: use this."""
    if level not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}")
    if IN_COMPONENT:
        _wit_log.log(_wit_log.Level(_LEVELS.index(level)), message)
    else:
        _native().log(level, message)


def list_secrets() -> list[str]:
    """Names (relative to the host's namespace) this connector may use."""
    if IN_COMPONENT:
        return _wit_secrets.list()
    return _native().list_secrets()


def invalidate(reference: str) -> bool:
    """Asks the host to drop its cached copy of a secret whose credentials
    were rejected; ``reference`` is written as a template writes it
    (``{{ secrets.db }}``). False if the host rate-limited it."""
    if IN_COMPONENT:
        return _wit_secrets.invalidate(reference)
    return _native().invalidate(reference)


def _reveal_handle(handle: int) -> str:
    if IN_COMPONENT:
        try:
            return _wit_secrets.reveal(handle)
        except Err as e:
            raise RenderError(str(e.value)) from None
    return _native().reveal(handle)


def reveal(text: Text) -> str:
    """The plaintext of ``text``, for a connector that must compute over a
    secret (sign a request). The operator must have granted ``reveal`` for
    every secret in it; the host audits it and marks every output of the
    render sensitive. Compose instead wherever you can."""
    revealed: dict[int, str] = {}

    def sealed(handle: int) -> str:
        if handle not in revealed:
            revealed[handle] = _reveal_handle(handle)
        return revealed[handle]

    return evaluate(Text.of(text).nodes(), sealed)
