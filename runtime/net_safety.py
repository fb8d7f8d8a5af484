"""Outbound URL safety: no webhook or input-image fetch may reach the VPC, the host or the metadata service.

Two levels, used at two moments:

- ``check_url_syntax(url)`` (no DNS): scheme http/https (or the ``schemes`` given), a host, no credentials
  in the URL, a port in range (or in the ``ports`` given), and a literal IP host must be public. Numeric
  hosts in the forms ``getaddrinfo`` accepts but ``ipaddress`` does not (``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``) are refused outright, as are ``localhost`` and names under ``.localhost``, ``.internal``,
  ``.local``. The API applies this when it validates a job, so bad URLs fail fast with a 422 and the API
  never blocks on DNS.
- ``resolve_and_check(url)`` (DNS): resolve the host and check *every* address it resolves to. The
  webhook sender and the worker's image fetcher call this right before connecting and then connect
  to the checked address (``pinned_request``), so DNS rebinding between check and use does not help.

Refused: private (RFC 1918, 100.64/10 shared, IPv6 ULA fc00::/7), loopback, link-local (169.254/16
which holds the instance metadata service, fe80::/10), multicast, reserved, unspecified, documentation
and benchmarking ranges, and any IPv6 address that embeds one of those IPv4 addresses (IPv4-mapped
``::ffff:a.b.c.d``, IPv4-compatible, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``, Teredo). Loopback is
allowed only with ``allow_loopback=True`` (local mode; never the default).

Errors: ``UnsafeURLError`` (a ``ValueError``) with ``rule`` (a stable short code) and a message.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_BLOCKED_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata",
                  "instance-data"}
# What getaddrinfo would read as an IPv4 address in a legacy form (decimal, octal, hex, short).
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
MAX_URL_LENGTH = 2048
# Checked in this order; the first that holds names the refusal.
_ADDRESS_RULES = (("is_unspecified", "unspecified-address"), ("is_link_local", "link-local-address"),
                  ("is_multicast", "multicast-address"), ("is_private", "private-address"),
                  ("is_reserved", "reserved-address"))


class UnsafeURLError(ValueError):
    """The URL may not be fetched or called; ``rule`` is a short code such as ``private-address``."""

    def __init__(self, rule: str, message: str):
        self.rule = rule
        super().__init__(message)


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the checks; ``addresses`` are the resolved, checked addresses (may be empty
    after a syntax-only check)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...] = ()


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed)
    return None


def address_problem(ip: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why ``ip`` may not be contacted (a rule code), or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped-address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_problem(inner, allow_loopback)
        if ip in _NAT64_LOCAL:
            return "private-address"
    if ip.is_loopback:
        return None if allow_loopback else "loopback-address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "private-address"
    for attribute, rule in _ADDRESS_RULES:
        if getattr(ip, attribute):
            return rule
    return None if ip.is_global else "non-global-address"


def check_address(address: str | IPAddress, allow_loopback: bool = False) -> IPAddress:
    """Parse and check one address; raise ``UnsafeURLError`` when it may not be contacted."""
    try:
        ip = address if not isinstance(address, str) else ipaddress.ip_address(address)
    except ValueError as exc:
        raise UnsafeURLError("invalid-address", f"{address!r} is not an IP address") from exc
    problem = address_problem(ip, allow_loopback)
    if problem:
        raise UnsafeURLError(problem, f"address {ip} is not a public unicast address ({problem})")
    return ip


def _split(url: str) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise UnsafeURLError("invalid-url", "must be a non-empty URL string")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError("too-long", f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError("invalid-url", "must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UnsafeURLError("invalid-url", f"is not a valid URL ({exc})") from exc
    return parts


def check_url_syntax(url: str, allow_loopback: bool = False, schemes: Sequence[str] = ("https", "http"),
                     ports: Sequence[int] | None = None) -> CheckedURL:
    """Checks that need no DNS (see module docstring). Returns the parsed, checked URL.

    ``ports``: the only ports allowed, explicit or the scheme's default (None: any), e.g. what a
    security group's egress lets out.
    """
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UnsafeURLError("scheme", f"scheme must be one of {', '.join(schemes)}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("credentials", "must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURLError("invalid-url", "must name a host")
    port = parts.port or (443 if scheme == "https" else 80)
    if port == 0:
        raise UnsafeURLError("invalid-url", "port must be from 1 to 65535")
    if ports is not None and port not in ports:
        raise UnsafeURLError("port", f"port {port} is not allowed: use port {' or '.join(map(str, ports))}")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allow_loopback)
        return CheckedURL(url=url, scheme=scheme, host=host, port=port, addresses=(str(literal),))
    _check_host_name(host, allow_loopback)
    return CheckedURL(url=url, scheme=scheme, host=host, port=port)


def _check_host_name(host: str, allow_loopback: bool) -> None:
    if _NUMERIC_HOST.match(host):
        raise UnsafeURLError("numeric-host", f"host {host!r} is a non-canonical numeric address")
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        if allow_loopback and (host == "localhost" or host.endswith(".localhost")):
            return
        raise UnsafeURLError("internal-host", f"host {host!r} names a local or internal host")
    if "." not in host:
        raise UnsafeURLError("internal-host", f"host {host!r} is not a fully qualified domain name")
    if not re.match(r"^[a-z0-9._-]+$", host):
        try:
            host.encode("idna")
        except UnicodeError as exc:
            raise UnsafeURLError("invalid-url", f"host {host!r} is not a valid domain name") from exc


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), via the system resolver."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_and_check(url: str, allow_loopback: bool = False, resolver: Resolver | None = None,
                      schemes: Sequence[str] = ("https", "http"), ports: Sequence[int] | None = None) -> CheckedURL:
    """Syntax checks, then resolve the host and check every address; all must be public."""
    checked = check_url_syntax(url, allow_loopback, schemes, ports)
    if checked.addresses:
        return checked
    try:
        addresses = list((resolver or system_resolver)(checked.host, checked.port))
    except (OSError, UnicodeError) as exc:
        raise UnsafeURLError("unresolvable", f"host {checked.host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeURLError("unresolvable", f"host {checked.host!r} does not resolve")
    for address in addresses:
        try:
            check_address(address, allow_loopback)
        except UnsafeURLError as exc:
            raise UnsafeURLError(exc.rule, f"host {checked.host!r} resolves to {address}, which is not a public "
                                           f"unicast address ({exc.rule})") from exc
    return CheckedURL(url=url, scheme=checked.scheme, host=checked.host, port=checked.port,
                      addresses=tuple(addresses))


def pinned_request(checked: CheckedURL) -> tuple[str, dict[str, str], dict[str, str]]:
    """(url, headers, httpx extensions) that connect to the first checked address while keeping the
    original Host header and TLS server name, so a second DNS answer cannot redirect the request."""
    parts = urlsplit(checked.url)
    if not checked.addresses:
        return checked.url, {}, {}
    address = checked.addresses[0]
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = f"{netloc_host}:{checked.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    default_port = 443 if checked.scheme == "https" else 80
    host_header = checked.host if checked.port == default_port else f"{checked.host}:{checked.port}"
    if ":" in checked.host:  # a literal IPv6 host keeps its brackets in the Host header
        host_header = f"[{checked.host}]" + ("" if checked.port == default_port else f":{checked.port}")
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions
