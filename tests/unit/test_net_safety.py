"""Outbound URL checks: every non-public address form is refused; loopback only when asked for."""

from __future__ import annotations

import pytest

from runtime.net_safety import (
    UnsafeURLError,
    check_address,
    check_url_syntax,
    pinned_request,
    resolve_and_check,
)


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "127.0.0.1", "127.8.9.10", "169.254.169.254",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "::ffff:10.0.0.1", "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe", "::127.0.0.1", "2001:db8::1",
    "fd00:ec2::254",  # the IPv6 instance metadata endpoint
])
def test_non_public_addresses_refused(address):
    with pytest.raises(UnsafeURLError):
        check_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    check_address(address)


def test_loopback_only_when_enabled():
    check_address("127.0.0.1", allow_loopback=True)
    check_address("::1", allow_loopback=True)
    check_address("::ffff:127.0.0.1", allow_loopback=True)
    for still_bad in ("10.0.0.1", "169.254.169.254", "fd00::1"):
        with pytest.raises(UnsafeURLError):
            check_address(still_bad, allow_loopback=True)


@pytest.mark.parametrize(("url", "rule"), [
    ("ftp://example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("https://user:pw@example.com/", "credentials"),
    ("http://2130706433/", "numeric-host"),
    ("http://0x7f.1/", "numeric-host"),
    ("http://0177.0.0.1/", "numeric-host"),
    ("http://127.1/", "numeric-host"),
    ("http://localhost:8080/", "internal-host"),
    ("http://metadata.google.internal/", "internal-host"),
    ("http://printer.local/", "internal-host"),
    ("http://intranet/", "internal-host"),
    ("http://[::1]/", "loopback-address"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local-address"),
    ("http://169.254.169.254/latest/meta-data/", "link-local-address"),
    ("http://example.com:99999/", "invalid-url"),
    ("http://exa mple.com/", "invalid-url"),
    ("http:///nohost", "invalid-url"),
    ("", "invalid-url"),
])
def test_syntax_refusals(url, rule):
    with pytest.raises(UnsafeURLError) as info:
        check_url_syntax(url)
    assert info.value.rule == rule


def test_every_resolved_address_is_checked():
    def resolver(host, port):
        return ["93.184.216.34", "10.1.2.3"]  # one public, one private: refuse

    with pytest.raises(UnsafeURLError) as info:
        resolve_and_check("https://rebind.example.com/hook", resolver=resolver)
    assert info.value.rule == "private-address"
    ok = resolve_and_check("https://ok.example.com/hook", resolver=lambda h, p: ["93.184.216.34"])
    assert ok.addresses == ("93.184.216.34",)


def test_unresolvable_host_is_refused():
    def resolver(host, port):
        raise OSError("NXDOMAIN")

    with pytest.raises(UnsafeURLError) as info:
        resolve_and_check("https://nowhere.example.com/", resolver=resolver)
    assert info.value.rule == "unresolvable"


def test_localhost_allowed_in_local_mode_resolves_to_loopback():
    checked = resolve_and_check("http://localhost:8080/h", allow_loopback=True, resolver=lambda h, p: ["127.0.0.1"])
    assert checked.addresses == ("127.0.0.1",)


def test_pinned_request_keeps_host_and_sni():
    checked = resolve_and_check("https://hooks.example.com:8443/a?b=1", resolver=lambda h, p: ["2606:4700::1"])
    url, headers, ext = pinned_request(checked)
    assert url == "https://[2606:4700::1]:8443/a?b=1"
    assert headers == {"Host": "hooks.example.com:8443"} and ext == {"sni_hostname": "hooks.example.com"}
