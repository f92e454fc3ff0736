"""The client in use, against a real `keyward serve` and a real PostgreSQL:

    python example.py render     render `orders-db`: its outputs, values masked here
    python example.py connect    render `orders-db`, connect, SELECT 1
    python example.py rotated    connect fails? invalidate, render again, connect
    python example.py denied     render `denied`: a clear error naming the field

Environment: KEYWARD_SOCKET (or KEYWARD_URL) and KEYWARD_TOKEN. Prints one
JSON line. Needs `pg8000` (pure Python).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import unquote, urlsplit

from keyward_client import KeywardClient, KeywardError

keyward = KeywardClient(socket_path=os.environ.get("KEYWARD_SOCKET"),
                        url=os.environ.get("KEYWARD_URL"),
                        token=os.environ.get("KEYWARD_TOKEN", ""))


def connect() -> int:
    """Renders `orders-db` and runs SELECT 1 with the DSN it rendered,
    connecting where keyward checked that the DSN goes."""
    import pg8000.native  # only the steps that connect need it

    rendered = keyward.render("orders-db")
    to = rendered.destinations()["dsn"]
    dsn = urlsplit(KeywardClient.values(rendered)["dsn"])
    connection = pg8000.native.Connection(
        user=unquote(dsn.username or ""), password=unquote(dsn.password or ""),
        host=to.host, port=to.port or 5432,
        database=unquote(dsn.path.lstrip("/")))
    try:
        return connection.run("SELECT 1")[0][0]
    finally:
        connection.close()


def main(step: str) -> dict:
    if step == "render":
        rendered = keyward.render("orders-db")
        return {"step": step, "connector": rendered.connector, "outputs": [
            {"name": o.name, "sensitive": o.sensitive, "value": "****" if o.sensitive else o.value}
            for o in rendered.outputs]}
    if step == "connect":
        return {"step": step, "one": connect()}
    if step == "rotated":
        import pg8000.native

        try:
            return {"step": step, "one": connect(), "invalidated": False}
        except pg8000.native.DatabaseError:
            # The password changed: drop keyward's cached copy and try again.
            keyward.invalidate("orders-db", "{{ secrets.db }}")
            return {"step": step, "one": connect(), "invalidated": True}
    if step == "denied":
        try:
            keyward.render("denied")
            return {"step": step, "error": None}
        except KeywardError as e:
            return {"step": step, "status": e.status, "code": e.code, "field": e.field,
                    "message": str(e)}
    raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "connect")))
    except Exception as e:  # one JSON line whatever happened, for the test
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
