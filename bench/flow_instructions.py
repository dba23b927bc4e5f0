"""Target 1's small flow run in process, without sockets: a figure the machine's load moves
little, for A/B of changes to the flow's own code (bench/RESULTS.md, fourteenth round).

    .venv/bin/python bench/flow_instructions.py --database sqlite:////tmp/copy.db --flows 400
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python \\
        bench/flow_instructions.py --database sqlite:////tmp/copy.db --flows 400

The app ``create_app`` builds, called as an ASGI app by 8 concurrent clients on uvloop, each
flow get_random + download of one extension's day, picked as ``small_flows.py`` picks them.
It prints the CPU seconds (``time.process_time``) of the flows and of as many ``GET /`` x 2,
per request. Under callgrind, run it twice with two flow counts and take
(Ir(N2) - Ir(N1)) / (N2 - N1): the start-up (imports, eight scrypt logins) cancels.

Run a build through ``PYTHONPATH=<its src>``; use a fresh copy of a seeded store each run.
Everything the server runs per request outside the app (uvicorn's parsing, the socket
sends) is left out: this measures what a change to the app's code moves.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import random
import secrets
import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import uvloop

from cdrgate.app import create_app
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings

CLIENTS = 8
SEED_START = date(2026, 1, 1)
API = "/api/v1.1.0"
PEER = ("127.0.0.1", 40000)
Asgi = Any  # the Starlette app, called as ASGI


async def call(app: Asgi, method: str, path: str, query: str = "", body: bytes = b"") -> bytes:
    """One request through the whole app (middleware included); the answer's body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "client": PEER, "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }  # fmt: skip
    sent = False
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the answer is written
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


async def flow(app: Asgi, token: str, picker: random.Random) -> None:
    ext = str(1000 + picker.randrange(50))
    day = SEED_START + timedelta(days=picker.randrange(365))
    start, end = f"{day} 00:00:00", f"{day} 23:59:59"
    body = json.dumps({"extid": ext, "starttime": start, "endtime": end}).encode()
    answer = await call(app, "POST", f"{API}/cdr/get_random", f"token={token}", body)
    fields = json.loads(answer)
    if fields.get("status") != "Success":
        raise SystemExit(f"get_random: {answer!r}")
    params = {"extid": ext, "starttime": start, "endtime": end, "token": token,
              "random": fields["random"]}  # fmt: skip
    csv = await call(app, "GET", f"{API}/cdr/download", urlencode(params))
    if not (csv.startswith(b"callid,") or b'"20021"' in csv):
        raise SystemExit(f"download: {csv[:200]!r}")


async def run(app: Asgi, md5: str, flows: int, trivial: bool) -> None:
    login = json.dumps({"username": "bench", "password": md5, "port": "8260"}).encode()
    tokens = [json.loads(await call(app, "POST", f"{API}/login", body=login))["token"]
              for _ in range(CLIENTS)]  # fmt: skip
    gc.collect()
    gc.freeze()  # as ``serve`` does after start-up
    per_client = flows // CLIENTS

    async def client(index: int) -> None:
        picker = random.Random(index)
        for _ in range(per_client):
            await flow(app, tokens[index], picker)

    started = time.process_time()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    spent = time.process_time() - started
    print(f"flows {per_client * CLIENTS}: {1e6 * spent / (2 * per_client * CLIENTS):.1f} us CPU "
          f"a flow request")  # fmt: skip
    if trivial:

        async def index_client() -> None:
            for _ in range(2 * per_client):
                await call(app, "GET", "/")

        started = time.process_time()
        await asyncio.gather(*(index_client() for _ in range(CLIENTS)))
        spent = time.process_time() - started
        print(f"GET / {2 * per_client * CLIENTS}: "
              f"{1e6 * spent / (2 * per_client * CLIENTS):.1f} us CPU a request")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="a fresh copy of a seeded store")
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--trivial", action="store_true", help="then as many GET / x 2")
    args = parser.parse_args()
    settings = Settings.from_env({}, database=args.database)
    app = create_app(settings)
    password = secrets.token_urlsafe(16)
    md5 = hashlib.md5(password.encode()).hexdigest()
    set_api_user(app.state.services.auth.db, "bench", password, int(time.time() * 1000))
    uvloop.run(run(app, md5, args.flows, args.trivial))


if __name__ == "__main__":
    main()
