"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1: what the message
says, how it is threaded, and what each SMTP answer means for a retry."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from nectar.config import EmailConfig
from nectar.notifications.channels.base import Delivery, DeliveryFailed, EventType, HandoffView
from nectar.notifications.channels.email import EmailChannel

USER, PASSWORD = "nectar-mailer", "s3cret-smtp-pa55word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: bytes | None


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers what the test asks."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.refuse: dict[str, str] = {}  # address -> RCPT reply
        self.data_reply: str | None = None  # e.g. "451 4.3.0 try later"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message,
                # After STARTTLS, or from the start (implicit TLS).
                tls=session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
                login=session.auth_data.login if session.authenticated else None,
            )
        )
        return "250 2.0.0 Message accepted"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    # handled=False: aiosmtpd answers 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox, **kwargs: Any) -> Iterator[int]:
    """aiosmtpd on 127.0.0.1 (in its own thread); yields the port."""
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_port(mailbox: Mailbox) -> Iterator[int]:
    with smtp_server(mailbox) as port:
        yield port


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [  # noqa: S607
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


def config(port: int, **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "from_address": "Nectar <nectar@example.com>",
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return EmailConfig(**values)


def view(**overrides: Any) -> HandoffView:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "bot_id": str(uuid.uuid4()),
        "bot_name": "Support",
        "conversation_id": str(uuid.uuid4()),
        "status": "pending",
        "reason": "user_request",
        "urgency": "high",
        "severity": "critical",
        "summary": "The customer asks for a refund of order 1234.",
        "created_at": "2025-01-01T12:00:00+00:00",
        "url": "https://nectar.example.com/api/nectar-bots/handoffs/abc",
        "user_name": "Jane Doe",
        "transcript": [
            {"role": "user", "content": "I want my money back"},
            {"role": "bot", "content": "Let me get a human."},
        ],
    }
    values.update(overrides)
    return HandoffView(**values)


def delivery(
    recipient: str = "agent@example.com",
    *,
    event: EventType = EventType.created,
    handoff: HandoffView | None = None,
    delivery_id: str | None = None,
    attempt: int = 1,
    data: dict[str, Any] | None = None,
) -> Delivery:
    delivery_id = delivery_id or str(uuid.uuid4())
    return Delivery(
        id=delivery_id,
        channel="email",
        event=event,
        handoff=handoff if handoff is not None or event is EventType.test else view(),
        recipient=recipient,
        attempt=attempt,
        idempotency_key=delivery_id,
        data=data or {},
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content(), rich.get_content()


# --- what the message says ----------------------------------------------------------------


async def test_a_new_handoff_email_has_plain_and_html_parts_a_subject_and_a_link(
    mailbox: Mailbox, smtp_port: int
) -> None:
    handoff = view()
    job = delivery("Ann Agent <ann@example.com>", handoff=handoff)
    result = await EmailChannel(config(smtp_port)).send(job)

    assert "250" in result.detail or "accepted" in result.detail
    [got] = mailbox.messages
    message = got.message
    assert got.mail_from == "nectar@example.com"
    assert got.rcpt_tos == ["ann@example.com"]
    assert message["To"] == "Ann Agent <ann@example.com>"
    assert message["Subject"] == "[Nectar] [HIGH] New handoff: Support"
    assert message.get_content_type() == "multipart/alternative"
    assert message["X-Nectar-Delivery"] == job.id
    assert message["X-Nectar-Handoff"] == handoff.id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["References"] == f"<nectar.handoff.{handoff.id}@example.com>"
    plain, rich = parts(message)
    for text in (plain, rich):
        assert "The customer asks for a refund of order 1234." in text
        assert "I want my money back" in text
        assert "Jane Doe" in text
        assert "high (critical)" in text
    assert f"Open the handoff: {handoff.url}" in plain
    assert f'<a href="{handoff.url}">Open the handoff</a>' in rich


async def test_everything_from_users_is_escaped_in_the_html_part(
    mailbox: Mailbox, smtp_port: int
) -> None:
    nasty = view(
        bot_name='<script>alert("bot")</script> & Co',
        summary="Click <a href='http://evil.example'>here</a>",
        user_name="<img src=x onerror=alert(1)>",
        transcript=[{"role": "user", "content": "</ul><iframe src=//evil>"}],
        url='https://nectar.example.com/h?a=1&b="2"',
    )
    await EmailChannel(config(smtp_port)).send(delivery(handoff=nasty))

    [got] = mailbox.messages
    plain, rich = parts(got.message)
    assert "<script>" not in rich and "<img" not in rich and "<iframe" not in rich
    assert "<a href='http://evil.example'>" not in rich
    assert "&lt;script&gt;alert(&quot;bot&quot;)&lt;/script&gt; &amp; Co" in rich
    assert "&lt;/ul&gt;&lt;iframe src=//evil&gt;" in rich
    assert 'href="https://nectar.example.com/h?a=1&amp;b=&quot;2&quot;"' in rich
    # The plain part is plain: the text as the user wrote it.
    assert "Click <a href='http://evil.example'>here</a>" in plain
    assert (
        got.message["Subject"] == '[Nectar] [HIGH] New handoff: <script>alert("bot")</script> & Co'
    )


async def test_a_bot_name_with_line_breaks_cannot_inject_headers(
    mailbox: Mailbox, smtp_port: int
) -> None:
    sneaky = view(bot_name="Support\r\nBcc: victim@example.com")
    await EmailChannel(config(smtp_port)).send(delivery(handoff=sneaky))

    [got] = mailbox.messages
    assert got.message["Bcc"] is None
    assert got.rcpt_tos == ["agent@example.com"]
    assert got.message["Subject"] == "[Nectar] [HIGH] New handoff: Support Bcc: victim@example.com"


async def test_follow_up_events_say_what_happened(mailbox: Mailbox, smtp_port: int) -> None:
    channel = EmailChannel(config(smtp_port))
    handoff = view(assignee_name="Ann", status="assigned")
    await channel.send(delivery(event=EventType.assigned, handoff=handoff))
    resolved = view(status="resolved", resolution_notes="Refund issued.", urgency="low")
    await channel.send(delivery(event=EventType.resolved, handoff=resolved))
    escalated = view(urgency="critical")
    await channel.send(
        delivery(event=EventType.escalated, handoff=escalated, data={"previous_urgency": "medium"})
    )
    await channel.send(delivery(event=EventType.test, data={"message": "Hello from the admin"}))

    subjects = [m.message["Subject"] for m in mailbox.messages]
    assert subjects == [
        "[Nectar] [HIGH] Handoff accepted by Ann: Support",
        "[Nectar] [LOW] Handoff resolved: Support",
        "[Nectar] [CRITICAL] Handoff escalated to critical: Support",
        "[Nectar] Test notification",
    ]
    assert "Resolution notes: Refund issued." in parts(mailbox.messages[1].message)[0]
    assert "Urgency raised from medium to critical." in parts(mailbox.messages[2].message)[0]
    assert "Hello from the admin" in parts(mailbox.messages[3].message)[0]


async def test_the_message_id_is_the_same_when_a_delivery_is_retried(
    mailbox: Mailbox, smtp_port: int
) -> None:
    channel = EmailChannel(config(smtp_port))
    job = delivery()
    await channel.send(job)
    await channel.send(delivery(delivery_id=job.id, handoff=job.handoff, attempt=2))
    await channel.send(delivery(handoff=job.handoff))

    first, retry, other = (m.message["Message-ID"] for m in mailbox.messages)
    assert first == retry == f"<nectar.{job.id}@example.com>"
    assert other != first
    assert [m.message["X-Nectar-Delivery"] for m in mailbox.messages][:2] == [job.id, job.id]


# --- what an SMTP answer means ------------------------------------------------------------


async def test_a_refused_recipient_fails_for_good(mailbox: Mailbox, smtp_port: int) -> None:
    mailbox.refuse["gone@example.com"] = "550 5.1.1 No such user here"
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(smtp_port)).send(delivery("gone@example.com"))
    assert failed.value.retriable is False
    assert failed.value.status_code == 550
    assert "gone@example.com" in str(failed.value)
    assert "No such user" in str(failed.value)
    assert mailbox.messages == []


async def test_a_greylisted_recipient_is_tried_again(mailbox: Mailbox, smtp_port: int) -> None:
    mailbox.refuse["later@example.com"] = "450 4.2.0 Greylisted, come back later"
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(smtp_port)).send(delivery("later@example.com"))
    assert failed.value.retriable is True
    assert failed.value.status_code == 450


async def test_a_temporary_failure_is_retriable(mailbox: Mailbox, smtp_port: int) -> None:
    mailbox.data_reply = "451 4.3.0 Local error in processing, try again"
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(smtp_port)).send(delivery())
    assert failed.value.retriable is True
    assert failed.value.status_code == 451

    mailbox.data_reply = None  # the server recovers: the retry goes through
    await EmailChannel(config(smtp_port)).send(delivery())
    assert len(mailbox.messages) == 1


async def test_a_rejected_message_fails_for_good(mailbox: Mailbox, smtp_port: int) -> None:
    mailbox.data_reply = "554 5.7.1 Message rejected as spam"
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(smtp_port)).send(delivery())
    assert failed.value.retriable is False
    assert failed.value.status_code == 554


async def test_a_server_that_is_down_is_retriable() -> None:
    port = free_port()  # nothing listens here any more
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(port)).send(delivery())
    assert failed.value.retriable is True
    assert f"127.0.0.1:{port}" in str(failed.value)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word (a hung relay)."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_does_not_answer_times_out_and_is_retriable() -> None:
    async with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed:
            await EmailChannel(config(port, timeout_seconds=0.3)).send(delivery())
    assert failed.value.retriable is True
    assert "timed out" in str(failed.value)
    assert time.monotonic() - started < 3


async def test_an_address_that_is_not_one_fails_for_good_without_a_connection() -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await EmailChannel(config(free_port())).send(delivery("not an address"))
    assert failed.value.retriable is False


# --- security -------------------------------------------------------------------------------


async def test_starttls_with_login(
    mailbox: Mailbox, certificate: Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = {
        "tls_context": certificate.server_context(),
        "require_starttls": True,
        "auth_required": True,
        "authenticator": authenticator,
    }
    with smtp_server(mailbox, **server) as port:
        settings = config(port, security="starttls", username=USER, password=PASSWORD)
        channel = EmailChannel(settings, tls_context=certificate.client_context())
        await channel.send(delivery())

        wrong = config(port, security="starttls", username=USER, password="not-" + PASSWORD)
        with pytest.raises(DeliveryFailed) as failed:
            await EmailChannel(wrong, tls_context=certificate.client_context()).send(delivery())

    [got] = mailbox.messages
    assert got.tls is True
    assert got.login == USER.encode()
    assert failed.value.retriable is False
    assert failed.value.status_code == 535
    assert PASSWORD not in str(failed.value)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(settings)


async def test_starttls_refuses_a_certificate_it_does_not_trust(
    mailbox: Mailbox, certificate: Certificate
) -> None:
    with (
        smtp_server(
            mailbox, tls_context=certificate.server_context(), require_starttls=True
        ) as port,
        pytest.raises(DeliveryFailed) as failed,
    ):
        await EmailChannel(config(port, security="starttls")).send(delivery())
    assert failed.value.retriable is True
    assert mailbox.messages == []


async def test_implicit_tls(mailbox: Mailbox, certificate: Certificate) -> None:
    with smtp_server(mailbox, ssl_context=certificate.server_context()) as port:
        channel = EmailChannel(
            config(port, security="tls"), tls_context=certificate.client_context()
        )
        await channel.send(delivery())
    [got] = mailbox.messages
    assert got.tls is True


async def test_security_none_does_not_upgrade_on_its_own(
    mailbox: Mailbox, certificate: Certificate
) -> None:
    """A server offering STARTTLS with a certificate nobody trusts: "none" means plain, so
    the message still goes (a local relay), unencrypted as configured."""
    with smtp_server(mailbox, tls_context=certificate.server_context()) as port:
        await EmailChannel(config(port, security="none")).send(delivery())
    [got] = mailbox.messages
    assert got.tls is False
