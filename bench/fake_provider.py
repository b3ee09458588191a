"""A fast fake MessageBird for benchmarks: `POST /messages` answers 201 with a Message object.

    python bench/fake_provider.py --port PORT [--log FILE]

asyncio streams, HTTP/1.1 with keep-alive, no framework, so that the fake
costs little CPU beside the worker it measures. With --log it appends one
line per accepted message: `<unix time>\t<reference>\t<recipient>`. Prints
`ready` once listening; exits on SIGTERM (or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import IO, Any

MAX_HEADER = 64 * 1024
MAX_BODY = 1024 * 1024

REASONS = {201: "Created", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}


class Fake:
    def __init__(self, log: IO[str] | None):
        self.log = log
        # A random prefix and a counter: unique ids without a uuid4 per message.
        self.prefix = os.urandom(8).hex()
        self.count = 0
        self.open: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}

    def message(self, request: dict[str, Any]) -> bytes:
        self.count += 1
        message_id = f"{self.prefix}{self.count:016x}"
        recipients = request.get("recipients") or []
        if isinstance(recipients, str):
            recipients = recipients.split(",")
        reference = request.get("reference")
        if self.log is not None:
            first = ",".join(str(r) for r in recipients)
            self.log.write(f"{time.time():.6f}\t{reference}\t{first}\n")
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        body = {
            "id": message_id,
            "href": f"https://rest.messagebird.com/messages/{message_id}",
            "direction": "mt",
            "type": "sms",
            "originator": request.get("originator"),
            "body": request.get("body"),
            "reference": reference,
            "validity": None,
            "gateway": 10,
            "typeDetails": {},
            "datacoding": request.get("datacoding", "plain"),
            "mclass": 1,
            "scheduledDatetime": None,
            "createdDatetime": now,
            "recipients": {
                "totalCount": len(recipients),
                "totalSentCount": len(recipients),
                "totalDeliveredCount": 0,
                "totalDeliveryFailedCount": 0,
                "items": [
                    {
                        # MessageBird gives the recipient back as a JSON number.
                        "recipient": int(r) if r.isdigit() else r,
                        "status": "sent",
                        "statusDatetime": now,
                        "messagePartCount": 1,
                    }
                    for r in (str(r).lstrip("+") for r in recipients)
                ],
            },
        }
        return json.dumps(body).encode()

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method != "POST" or path.split("?", 1)[0].rstrip("/") != "/messages":
            return 404, b'{"errors":[{"code":98,"description":"not found"}]}'
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return 400, b'{"errors":[{"code":21,"description":"bad request"}]}'
        return 201, self.message(request)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open[writer] = asyncio.current_task()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return  # the client closed the connection, or sent garbage
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                method, path, version = parts
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
                    status, payload, body = 413, b"", b""
                    keep_alive = False
                else:
                    body = await reader.readexactly(length) if length else b""
                    status, payload = self.answer(method, path, body)
                    connection = headers.get("connection", "").lower()
                    keep_alive = connection != "close" and (
                        version == "HTTP/1.1" or connection == "keep-alive"
                    )
                writer.write(
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open.pop(writer, None)
            writer.close()

    async def close_all(self) -> None:
        """End kept-alive connections, so that exiting cancels no task mid-read."""
        tasks = [task for task in self.open.values() if task is not None]
        for writer in list(self.open):
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2)


async def main(port: int, log_path: str | None) -> None:
    # Line-buffered: a reader of the log sees each message as it is answered.
    log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None  # noqa: SIM115 - closed below
    try:
        fake = Fake(log)
        server = await asyncio.start_server(
            fake.serve, "127.0.0.1", port, limit=MAX_HEADER, backlog=1024
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            print("ready", flush=True)
            await stop.wait()
            await fake.close_all()
    finally:
        if log is not None:
            log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--log", help="append `<unix time>\\t<reference>\\t<recipient>` per message"
    )
    args = parser.parse_args()
    asyncio.run(main(args.port, args.log))
    sys.exit(0)
