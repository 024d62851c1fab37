"""Email over SMTP (aiosmtplib): one message per recipient, plain text and HTML.

What an SMTP answer means for the worker: a 5xx (a refused recipient, a rejected message,
bad credentials) will not change by trying again, so it is permanent; a 4xx (mailbox busy,
greylisting, "try again later"), a dropped connection or a timeout is retriable. The
Message-ID comes from the delivery id, so a retry that reaches the mailbox twice is one
message to any client that drops duplicates.
"""

from __future__ import annotations

import email.utils
import html
import logging
import re
import ssl
from email.message import EmailMessage
from typing import ClassVar
from urllib.parse import urlsplit

import aiosmtplib

from nectar.config import EmailConfig
from nectar.notifications.channels.base import Delivery, DeliveryFailed, SendResult
from nectar.notifications.channels.text import Wording, describe, one_line

log = logging.getLogger(__name__)
SUBJECT_LENGTH = 200
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+$")


def _domain(from_address: str) -> str:
    """The Message-ID's right-hand side: the sender's domain when it is a plain one."""
    _, address = email.utils.parseaddr(from_address)
    domain = address.rpartition("@")[2]
    return domain if domain and _DOMAIN.match(domain) else "nectar.localhost"


def _recipient(recipient: str) -> str:
    name, address = email.utils.parseaddr(recipient)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c in recipient for c in "\r\n"):
        raise DeliveryFailed(f"{recipient[:100]!r} is not an email address", retriable=False)
    return email.utils.formataddr((name, address)) if name else address


def _link(url: str) -> str | None:
    """Only http(s) URLs become links."""
    return url if urlsplit(url).scheme in ("http", "https") else None


class EmailChannel:
    name: ClassVar[str] = "email"
    external: ClassVar[bool] = False

    def __init__(self, config: EmailConfig, *, tls_context: ssl.SSLContext | None = None) -> None:
        """``tls_context``: to trust a private CA (tests, an internal relay); by default the
        system's trust store and hostname checks apply."""
        self._config = config
        self._tls_context = tls_context
        self._domain = _domain(config.from_address)

    def message_id(self, delivery: Delivery) -> str:
        return f"<nectar.{delivery.id}@{self._domain}>"

    def subject(self, delivery: Delivery, wording: Wording) -> str:
        if delivery.handoff is None:
            return one_line(f"[Nectar] {wording.headline}", SUBJECT_LENGTH)
        urgency = delivery.handoff.urgency.upper()
        return one_line(f"[Nectar] [{urgency}] {wording.headline}", SUBJECT_LENGTH)

    def build(self, delivery: Delivery) -> EmailMessage:
        wording = describe(delivery)
        message = EmailMessage()
        message["From"] = self._config.from_address
        message["To"] = _recipient(delivery.recipient)
        message["Subject"] = self.subject(delivery, wording)
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = self.message_id(delivery)
        message["X-Nectar-Delivery"] = delivery.id
        message["X-Nectar-Event"] = delivery.event.value
        # RFC 3834: auto-responders must not answer.
        message["Auto-Submitted"] = "auto-generated"
        if delivery.handoff is not None:
            message["X-Nectar-Handoff"] = delivery.handoff.id
            # Every email about one handoff lands in one thread.
            thread = f"<nectar.handoff.{delivery.handoff.id}@{self._domain}>"
            message["References"] = thread
            message["In-Reply-To"] = thread
        message.set_content(self._plain(delivery, wording))
        message.add_alternative(self._html(delivery, wording), subtype="html")
        return message

    def _plain(self, delivery: Delivery, wording: Wording) -> str:
        lines = [wording.title, "", wording.body, ""]
        lines += [f"{label}: {value}" for label, value in wording.facts]
        view = delivery.handoff
        if view is not None and view.transcript:
            lines += ["", "Recent messages:"]
            lines += [f"  {m.get('role', '?')}: {m.get('content', '')}" for m in view.transcript]
        if view is not None and view.url:
            lines += ["", f"Open the handoff: {view.url}"]
        lines += ["", "-- ", f"Sent by Nectar (delivery {delivery.id})."]
        return "\n".join(lines) + "\n"

    def _html(self, delivery: Delivery, wording: Wording) -> str:
        e = html.escape
        body = "<br>\n".join(e(line) for line in wording.body.splitlines())
        parts = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8"></head>',
            '<body style="font-family: sans-serif; line-height: 1.4">',
            f"<h2>{e(wording.title)}</h2>",
            f"<p>{body}</p>",
        ]
        if wording.facts:
            rows = "".join(
                f'<tr><th align="left" style="padding-right: 1em">{e(label)}</th>'
                f"<td>{e(value)}</td></tr>"
                for label, value in wording.facts
            )
            parts.append(f"<table>{rows}</table>")
        view = delivery.handoff
        if view is not None and view.transcript:
            items = "".join(
                f"<li><b>{e(m.get('role', '?'))}</b>: {e(m.get('content', ''))}</li>"
                for m in view.transcript
            )
            parts.append(f"<p>Recent messages:</p><ul>{items}</ul>")
        if view is not None and view.url:
            link = _link(view.url)
            if link:
                parts.append(f'<p><a href="{e(link)}">Open the handoff</a></p>')
            else:
                parts.append(f"<p>Handoff: {e(view.url)}</p>")
        parts.append(
            f'<p style="color: #888; font-size: small">Sent by Nectar (delivery {e(delivery.id)}).'
            "</p></body></html>"
        )
        return "\n".join(parts) + "\n"

    async def send(self, delivery: Delivery) -> SendResult:
        message = self.build(delivery)
        config = self._config
        server = f"SMTP {config.smtp_host}:{config.smtp_port}"
        try:
            refused, reply = await aiosmtplib.send(
                message,
                hostname=config.smtp_host,
                port=config.smtp_port,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                use_tls=config.security == "tls",
                # Explicit either way: "none" must not upgrade opportunistically.
                start_tls=config.security == "starttls",
                timeout=config.timeout_seconds,
                tls_context=self._tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _refused(server, exc.recipients) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _answer(server, exc.code, exc.message) from None
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryFailed(f"{server} timed out", retriable=True) from None
        except aiosmtplib.SMTPNotSupported as exc:
            # The server lacks what the config asks for (STARTTLS, AUTH): fix the config.
            raise DeliveryFailed(f"{server}: {exc}", retriable=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Refused or dropped connections, TLS handshake failures, DNS errors.
            raise DeliveryFailed(f"{server}: {type(exc).__name__}: {exc}", retriable=True) from None
        if refused:
            raise _refused(
                server,
                [
                    aiosmtplib.SMTPRecipientRefused(r.code, r.message, address)
                    for address, r in refused.items()
                ],
            )
        log.debug("email for delivery %s accepted by %s", delivery.id, server)
        return SendResult(detail=f"{server}: {reply}"[:300])

    async def aclose(self) -> None:
        """Nothing to close: each send opens and closes its own SMTP connection."""


def _answer(server: str, code: int, text: str) -> DeliveryFailed:
    text = " ".join(text.split())[:300]
    return DeliveryFailed(
        f"{server} answered {code} {text}", retriable=400 <= code < 500, status_code=code
    )


def _refused(server: str, recipients: list[aiosmtplib.SMTPRecipientRefused]) -> DeliveryFailed:
    """A recipient refused with 5xx is permanent (no such mailbox); with 4xx (greylisted,
    mailbox full or busy) it may work later."""
    first = recipients[0]
    retriable = all(400 <= r.code < 500 for r in recipients)
    text = " ".join(first.message.split())[:300]
    return DeliveryFailed(
        f"{server} refused recipient {first.recipient}: {first.code} {text}",
        retriable=retriable,
        status_code=first.code,
    )
