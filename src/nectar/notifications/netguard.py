"""Refuse outgoing requests to private, loopback and link-local addresses (SSRF), unless the
host or range is allow-listed in ``nectar_bots.handoff.integrations.allow_private_hosts``."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from nectar.notifications.channels.base import DeliveryFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(DeliveryFailed):
    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


def _is_private(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _is_private(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


class NetGuard:
    def __init__(self, allow: list[str]) -> None:
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry.lower())

    def _allowed(self, host: str, ip: IPAddress) -> bool:
        return host.lower() in self._hosts or any(ip in net for net in self._networks)

    async def check(self, url: str) -> None:
        """Raise BlockedAddress unless every address the URL's host resolves to is public
        (or allow-listed)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BlockedAddress(f"only http and https URLs are allowed (got {parts.scheme!r})")
        host = parts.hostname
        if not host:
            raise BlockedAddress("the URL has no host")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host,
                    parts.port or (443 if parts.scheme == "https" else 80),
                    type=socket.SOCK_STREAM,
                )
            except OSError as exc:
                raise DeliveryFailed(f"cannot resolve {host}: {exc}", retriable=True) from None
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for ip in addresses:
            if _is_private(ip) and not self._allowed(host, ip):
                raise BlockedAddress(
                    f"{host} resolves to {ip}, a private/loopback/link-local address; "
                    "allow it in nectar_bots.handoff.integrations.allow_private_hosts"
                )
