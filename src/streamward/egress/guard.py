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
MAX_HOST_NAME_LENGTH = 253  # DNS limits (RFC 1035), in the ASCII (IDNA) form
MAX_LABEL_LENGTH = 63


class UnsafeTarget(BadRequest):
    code = "webhook_target_refused"
    message = "The webhook must be an http(s) URL that resolves to public addresses only."


# Blocks of the IANA special-purpose address registries (RFC 6890 and later) that are not globally
# reachable, plus multicast and deprecated space. They are refused here by name, in addition to
# ``is_global``, so the guard does not depend on the table of the Python version that runs it
# (3.11's, for one, lets fec0::/10 and 3fff::/20 through). Blocks the registry marks globally
# reachable but that no webhook receiver lives in (anycast service addresses, AS112 sinks, AMT
# relays, ORCHID identifiers) are refused as well: all of 2001::/23 and 192.0.0.0/24 go.
DENIED_IPV4_NETWORKS: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (CGNAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, anycast services)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
DENIED_IPV6_NETWORKS: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(block)
    for block in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped (judged by the IPv4 address before this list is consulted)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "100:0:0:1::/64",  # dummy prefix
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, anycast services
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 segment identifiers
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# IANA hands out global unicast space from 2000::/3 only; anything else is not a public host.
IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is one of the translation forms a
    connection really goes to: IPv4-mapped, 6to4, NAT64 (well-known prefix)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses; IPv4 embedded in IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address not in IPV6_GLOBAL_UNICAST or any(address in block for block in DENIED_IPV6_NETWORKS):
            return False
    elif any(address in block for block in DENIED_IPV4_NETWORKS):
        return False
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


def _check_host_name(host: str) -> None:
    """Refuse a host no resolver accepts (an empty label as in ``a..b``, a label over 63 characters,
    a name over 253) as a refused target. Left to the resolver, the IDNA codec raised UnicodeError."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeTarget("The URL's host is not a valid host name.") from None
    name = ascii_host.removesuffix(".")  # one trailing dot: the fully qualified form
    if len(name) > MAX_HOST_NAME_LENGTH or not all(
        1 <= len(label) <= MAX_LABEL_LENGTH for label in name.split(".")
    ):
        raise UnsafeTarget("The URL's host is not a valid host name.")


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
    _check_host_name(parts.hostname)
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
        except (OSError, ValueError):  # ValueError: names the IDNA codec refuses (UnicodeError)
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
