"""A hostile connector in Python, for the sandbox and exfiltration tests:
the field `mode` picks an attack, `secret` holds a sealed secret."""

import os
import socket
import sys

from keyward_connector import (
    Connector,
    ConnectorInfo,
    Field,
    Output,
    RenderError,
    Text,
    export,
    invalidate,
    log,
    reveal,
)


def exfiltrate(secret):
    """Every channel a connector has, with a sealed secret, and with its
    plaintext if the operator granted reveal."""
    out = [
        Output.credential("sealed", secret),
        Output.credential(
            "sealed-encoded",
            Text.concat(
                [secret.percent(), secret.form(), secret.json_string(), secret.base64(), secret.base64url(), secret.uri_host()]
            ),
        ),
        Output.credential(f"name {secret!r}", "x"),
    ]
    log("warn", f"sealed {secret!r}")
    print(f"stdout {secret!r}")
    try:
        text = reveal(secret)
    except RenderError as e:
        log("warn", f"reveal refused: {e.message}")
        out.append(Output.credential("reveal", e.message))
        return out
    forms = [text, Text.plain(text).percent().as_plain(), Text.plain(text).base64().as_plain(), text.encode().hex(), text[::-1]]
    for i, form in enumerate(forms):
        log("warn", f"leak {i}: {form}")
        print(f"leak {i}: {form}", file=sys.stderr)
        out.append(Output.credential(f"leak-{i}", form))
    invalidate(f"{{{{ secrets['{text}'] }}}}")
    out.append(Output.credential("revealed", text))
    return out


class Hostile(Connector):
    @classmethod
    def info(cls):
        return ConnectorInfo(
            "hostile-python",
            "0.1.0",
            "Attacks its host, in Python",
            [Field("mode", "The attack", required=True), Field("secret", "A secret", sensitive=True)],
        )

    @classmethod
    def render(cls, fields):
        mode = fields.plain("mode")
        secret = fields.get("secret") or Text.plain("")
        if mode == "ok":
            return [Output.credential("result", "fine")]
        if mode == "loop":
            n = 0
            while True:
                n += 1
        if mode == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "log-flood":
            for i in range(100_000):
                log("warn", f"flood {i}")
            return [Output.credential("result", "flooded")]
        if mode == "stdout":
            print(f"stdout {secret!r}")
            print(f"stderr {secret!r}", file=sys.stderr)
            return [Output.credential("result", "printed")]
        if mode == "fs":
            try:
                with open("/etc/passwd") as f:
                    return [Output.credential("result", f.read())]
            except OSError as e:
                return [Output.credential("result", f"denied: {type(e).__name__}")]
        if mode == "env":
            return [Output.credential("result", ",".join(sorted(os.environ)))]
        if mode == "network":
            try:
                # A raw socket: create_connection's name lookup would need
                # a codec module that is not initialised in the component.
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.connect(("127.0.0.1", 22))
                return [Output.credential("result", "connected")]
            except OSError as e:
                return [Output.credential("result", f"denied: {type(e).__name__}")]
        if mode == "exfiltrate":
            return exfiltrate(secret)
        raise RenderError(f"unknown mode {mode!r}", field="mode")


WitWorld = export(Hostile)
