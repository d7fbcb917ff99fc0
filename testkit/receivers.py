"""Real local receivers for alert sinks: an HTTP webhook endpoint and an SMTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


class WebhookReceiver:
    """Collects every JSON body POSTed to it, with the last segment of its path (the sender);
    `fail_next` makes it answer 503 that many times (after `ok_before_failing` more successes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[tuple[str, dict[str, Any]]] = []
        self._arrived: list[float] = []  # time.time() of each post kept, in order
        self.fail_next = 0
        self.ok_before_failing = 0
        self.failures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    if receiver.fail_next > 0 and receiver.ok_before_failing > 0:
                        receiver.ok_before_failing -= 1
                    elif receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        receiver.failures += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver._posts.append((self.path.rsplit("/", 1)[-1], json.loads(body)))
                    receiver._arrived.append(time.time())
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return self.url_for("alerts")

    def url_for(self, name: str) -> str:
        """A URL whose last segment names the sender, so `posts()` tells senders apart."""
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._posts)

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.posts()]

    def arrivals(self) -> list[tuple[float, dict[str, Any]]]:
        """Each body with when it arrived (seconds since the epoch): lateness without polling."""
        with self._lock:
            return [(at, body) for at, (_, body) in zip(self._arrived, self._posts, strict=True)]

    def alert_ids(self) -> set[str]:
        return {b["alert_id"] for b in self.bodies()}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server() -> Iterator[tuple[str, int, _Mailbox]]:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.hostname, controller.port, mailbox
    finally:
        controller.stop()
