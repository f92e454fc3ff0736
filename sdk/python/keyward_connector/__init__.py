"""Write keyward connectors in Python.

A connector declares its fields and renders outputs from them. Secret
values arrive *sealed*: the connector composes them (``"redis://" +
user.percent() + ":" + password.percent() + "@" + host``) with the
contract's encodings, and the host evaluates the result after ``render``
returns, so the connector never holds a value. See
``docs/connector-guide.md``."""

from .connector import Connector, ConnectorInfo, Field, Fields, Output, RenderError
from .export import export
from .host import invalidate, list_secrets, log, reveal
from .text import Text

__all__ = [
    "Connector",
    "ConnectorInfo",
    "Field",
    "Fields",
    "Output",
    "RenderError",
    "Text",
    "export",
    "invalidate",
    "list_secrets",
    "log",
    "reveal",
]
