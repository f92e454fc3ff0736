"""The component's exports, ``describe`` and ``render``, from a
:class:`~keyward_connector.Connector`: in the connector's app module,
``WitWorld = export(MyConnector)``."""

from __future__ import annotations

from .connector import Connector, Fields, RenderError
from .host import IN_COMPONENT
from .text import Text

if IN_COMPONENT:
    import wit_world
    from componentize_py_types import Err
    from wit_world.imports import types as _types

    _ENCODINGS = {
        "percent": _types.Encoding.PERCENT,
        "form": _types.Encoding.FORM,
        "json-string": _types.Encoding.JSON_STRING,
        "base64": _types.Encoding.BASE64,
        "base64url": _types.Encoding.BASE64URL,
        "uri-host": _types.Encoding.URI_HOST,
    }
    _KINDS = {
        "destination": _types.OutputKind.DESTINATION,
        "credential": _types.OutputKind.CREDENTIAL,
        "setting": _types.OutputKind.SETTING,
    }
    _PARTS = {
        None: None,
        "url": _types.DestinationPart.URL,
        "host": _types.DestinationPart.HOST,
        "port": _types.DestinationPart.PORT,
        "resource": _types.DestinationPart.RESOURCE,
    }


def fields_from_pieces(fields) -> Fields:
    """The SDK's fields from the contract's (name, pieces) pairs, where a
    piece is ``("plain", str)`` or ``("sealed", handle)``."""
    return Fields(
        {
            name: Text.concat(
                Text.plain(value) if kind == "plain" else Text._sealed(value)
                for kind, value in pieces
            )
            for name, pieces in fields
        }
    )


def run_render(connector: type[Connector], fields: Fields):
    """Calls the connector; an unexpected exception becomes a render error
    naming its type (the host masks revealed values in it)."""
    try:
        return connector.render(fields), None
    except RenderError as e:
        return None, e
    except Exception as e:  # noqa: BLE001 - a connector bug must not trap the host call
        return None, RenderError(f"the connector raised {type(e).__name__}: {e}")


def export(connector: type[Connector]):
    """The ``WitWorld`` class componentize-py exports for ``connector``."""
    if not IN_COMPONENT:
        return connector

    def to_wit_node(node):
        kind = node[0]
        if kind == "plain":
            return _types.Node_Plain(node[1])
        if kind == "sealed":
            return _types.Node_Sealed(node[1])
        if kind == "concat":
            return _types.Node_Concat(node[1])
        return _types.Node_Encode((_ENCODINGS[node[1]], node[2]))

    class Exported(wit_world.WitWorld):
        def describe(self):
            info = connector.info()
            return _types.ConnectorInfo(
                name=info.name,
                version=info.version,
                description=info.description,
                fields=[
                    _types.FieldSpec(
                        name=f.name,
                        description=f.description,
                        required=f.required,
                        sensitive=f.sensitive,
                        default_value=f.default,
                        secret_reference=f.secret_reference,
                        destination=_PARTS[f.destination],
                    )
                    for f in info.fields
                ],
                run_every_render=info.run_every_render,
            )

        def render(self, fields):
            pieces = [
                (
                    f.name,
                    [
                        ("plain", p.value) if isinstance(p, _types.Text_Plain) else ("sealed", p.value)
                        for p in f.value
                    ],
                )
                for f in fields
            ]
            outputs, error = run_render(connector, fields_from_pieces(pieces))
            if error is not None:
                raise Err(_types.RenderError(field=error.field, column=error.column, message=error.message))
            return [
                _types.Output(
                    name=o.name,
                    value=_types.Composition(nodes=[to_wit_node(n) for n in o.value.nodes()]),
                    kind=_KINDS[o.kind],
                    sensitive=o.sensitive,
                )
                for o in outputs
            ]

    return Exported
