"""Where Streamward may send requests: public addresses only (SSRF guard).

A webhook URL is checked when it is saved (``check_webhook_url``) and every resolved address is
checked again when connecting (``resolve_public``, used by the delivery transport), so a name that
resolves to a public address at save time and to 127.0.0.1 later (DNS rebinding) is still refused.
Private targets can be allowed by an operator setting, for development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamward.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048


class UnsafeTarget(BadRequest):
    code = "webhook_target_refused"
    message = "The webhook must be an http(s) URL that resolves to public addresses only."


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses; IPv4 embedded in IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address.sixtofour is not None:
            return is_public_address(address.sixtofour)
        if address.teredo is not None:
            return False
        # NAT64 well-known prefix: the embedded IPv4 decides.
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_link_local
        and not address.is_loopback
        and not address.is_private
        and not address.is_unspecified
    )


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    addresses: list[str]


def parse_webhook_url(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("The URL cannot be parsed.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("Only http and https webhooks are allowed.")
    if not parts.hostname:
        raise UnsafeTarget("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeTarget("Credentials in the URL are not allowed; use the signing secret.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve_public(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses ``host`` resolves to, all of them checked; refuse when any is not public."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(host, port)
        except OSError:
            raise UnsafeTarget(f"The host {host!r} does not resolve.") from None
    if not addresses:
        raise UnsafeTarget(f"The host {host!r} does not resolve.")
    if not allow_private:
        for address in addresses:
            if not is_public_address(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UnsafeTarget(f"The host {host!r} resolves to a non-public address.")
    return addresses


async def check_webhook_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Validate a webhook URL for saving: http(s), no credentials, every resolved address public.

    Numeric host forms that are not dotted quads (``2130706433``, ``0177.0.0.1``) resolve through
    the system resolver like names do, and are judged by the address they resolve to.
    """
    scheme, host, port = parse_webhook_url(url)
    addresses = await resolve_public(host, port, allow_private=allow_private, resolver=resolver)
    return Target(scheme, host, port, addresses)
