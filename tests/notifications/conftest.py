"""A real webhook receiver: an HTTP server on 127.0.0.1 in a thread that checks each request's
signature with the subscription's secret, records it, and answers with the statuses it is
told to (then 200). Deliveries to it need WEBHOOK_ALLOW_PRIVATE_NETWORKS, which the fixtures
turn on."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from loyalty.services.events import member_event_record
from loyalty.services.webhooks import webhook_subscription_create


@dataclass
class Received:
    body: bytes
    headers: dict
    signature_valid: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    secret: str = ""
    answers: list[int] = field(default_factory=list)  # statuses to answer, then 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [r.json["id"] for r in self.received]

    def verify(self, header: str, body: bytes) -> bool:
        """What an integrator's receiver does (docs/notifications.md)."""
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = hmac.new(
            self.secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if receiver.delay:
                time.sleep(receiver.delay)
            with receiver.lock:
                receiver.received.append(
                    Received(
                        body=body,
                        headers=dict(self.headers),
                        signature_valid=receiver.verify(self.headers["Tessera-Signature"], body),
                    )
                )
                status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver is down")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


def serve(state: Receiver, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
    """Start the receiver's server; returns a function that stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://{host}:{server.server_address[1]}/hooks/tessera?src=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return stop


@pytest.fixture
def receiver(allow_private):
    state = Receiver()
    stop = serve(state)
    yield state
    stop()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost and 127.0.0.1: (certificate file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(allow_private, certificate):
    """The receiver behind HTTPS on https://localhost:<port>/, with a self-signed certificate."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state = Receiver()
    stop = serve(state, tls=context, host="localhost")
    yield state
    stop()


@pytest.fixture
def subscribe(program, receiver):
    """subscribe(events="all") -> the subscription to the receiver (whose secret it learns)."""

    def _subscribe(events="all", url=None):
        subscription, secret = webhook_subscription_create(
            program=program, url=url or receiver.url, events=events, actor="test"
        )
        receiver.secret = secret
        return subscription

    return _subscribe


@pytest.fixture
def event():
    """event(member, type="birthday", **payload) -> an outbox event written now."""

    def _event(member, type="birthday", **payload):
        with transaction.atomic():
            return member_event_record(
                member=member, type=type, payload=payload, occurred_at=timezone.now()
            )

    return _event
