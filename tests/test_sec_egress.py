"""The SSRF guard's address table, independent of the Python version's ``ipaddress`` tables, and host
names the IDNA codec refuses (an empty label, a label of 64 characters): a clear 400 when saving,
a refused attempt at delivery, never a 500."""

from __future__ import annotations

import ipaddress

import pytest

from streamward.egress.guard import is_public_address
from tests.conftest import Env
from tests.support.data import configure_webhook, use_fake_dns
from tests.support.pages import csrf_of, signed_in

WEBHOOK = "/api/organisation/webhook"

# One address inside every block that must be refused, with the reason.
NOT_PUBLIC = [
    ("0.1.2.3", "this network"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "CGNAT"),
    ("127.0.0.2", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.31.255.254", "private"),
    ("192.0.0.9", "IETF protocol assignments (anycast)"),
    ("192.0.0.170", "NAT64 discovery"),
    ("192.0.2.7", "TEST-NET-1"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.168.0.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.7", "TEST-NET-3"),
    ("224.0.0.251", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::a00:1", "IPv4-compatible"),
    ("::5db8:d822", "IPv4-compatible of a public address"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:192.168.0.1", "IPv4-mapped private"),
    ("64:ff9b::a00:1", "NAT64 of 10.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of the metadata address"),
    ("64:ff9b:1::5db8:d822", "local-use NAT64"),
    ("100::1", "discard-only"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo with a client address"),
    ("2001:1::1", "PCP anycast (2001::/23)"),
    ("2001:2::1", "benchmarking"),
    ("2001:3::1", "AMT (2001::/23)"),
    ("2001:4:112::1", "AS112-v6 (2001::/23)"),
    ("2001:10::1", "ORCHID"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:db8::1", "documentation"),
    ("2002:a00:1::1", "6to4 of 10.0.0.1"),
    ("2002:7f00:1::1", "6to4 of 127.0.0.1"),
    ("3fff::1", "documentation (3fff::/20)"),
    ("3fff:fff:ffff::1", "documentation (3fff::/20, last block)"),
    ("5f00::1", "SRv6 SIDs"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local (deprecated)"),
    ("feff::1", "site-local (deprecated), last block"),
    ("ff02::1", "multicast"),
    ("4000::1", "outside global unicast 2000::/3"),
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",  # IPv4-mapped: judged as the IPv4 address it stands for
    "64:ff9b::5db8:d822",  # NAT64 (DNS64 networks): the embedded 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    "2620:4f:8000::1",  # AS112 direct delegation: globally reachable per IANA
]


@pytest.mark.parametrize(("address", "why"), NOT_PUBLIC, ids=[a for a, _ in NOT_PUBLIC])
def test_special_purpose_addresses_are_not_public(address: str, why: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address)), why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


async def test_special_purpose_literals_are_refused_when_saving(env: Env) -> None:
    org = await env.org()
    for literal in ("fec0::1", "3fff::1", "64:ff9b:1::a", "100::1", "2001:3::1", "5f00::1", "::a00:1"):
        url = f"http://[{literal}]/hook"
        response = await env.client.put(WEBHOOK, json={"webhook": url}, headers=org.api_headers)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "webhook_target_refused", url


async def test_special_purpose_addresses_a_name_resolves_to_are_refused(env: Env) -> None:
    org = await env.org()

    async def resolver(host: str, port: int) -> list[str]:
        return {"site-local.example.com": ["fec0::5"], "doc.example.com": ["3fff:1::5"]}[host]

    env.runtime.webhook_resolver = resolver
    for host in ("site-local.example.com", "doc.example.com"):
        response = await env.client.put(
            WEBHOOK, json={"webhook": f"https://{host}/in"}, headers=org.api_headers
        )
        assert response.status_code == 400, (host, response.text)
        assert response.json()["error"]["code"] == "webhook_target_refused"


# Host names the IDNA codec refuses before any DNS query; the real resolver is used on purpose.
BAD_HOST_URLS = [
    "http://a..b/",
    "https://hooks..example.com/in",
    "http://" + "a" * 64 + ".example.com/",
    "http://" + "a" * 64 + "/",
    "https://" + ".".join(["abcdefghi"] * 26) + ".com/",  # a name over 253 characters
    "http://.example.com/",
]


async def test_invalid_host_names_are_a_clear_400_through_the_api(env: Env) -> None:
    org = await env.org()
    for url in BAD_HOST_URLS:
        response = await env.client.put(WEBHOOK, json={"webhook": url}, headers=org.api_headers)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "webhook_target_refused", url
    assert (await env.client.get(WEBHOOK, headers=org.api_headers)).json()["webhook"] is None


async def test_invalid_host_names_are_refused_by_the_dashboard_form(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    browser = await signed_in(env, admin)
    for url in BAD_HOST_URLS[:3]:
        page = await browser.get("/organisation/overview")
        assert page.status_code == 200, page.text
        response = await browser.post(
            "/organisation/webhook", data={"csrf_token": csrf_of(page.text), "url": url}
        )
        assert response.status_code == 400, (url, response.text)
        assert "not a valid host name" in response.text
    await browser.aclose()


async def test_a_stored_invalid_host_is_a_refused_attempt_at_delivery(env: Env) -> None:
    """A URL saved before the check existed: the test event is refused, not a 500."""
    org = await env.org()
    admin = await env.member(org)
    use_fake_dns(env)
    await configure_webhook(env, org, "http://a..b/hook")
    response = await env.client.post("/api/organisation/webhook/test", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["delivered"] is False and body["responseCode"] is None
    assert "not a valid host name" in body["error"]


async def test_an_over_long_url_from_the_dashboard_form_is_a_clear_400(env: Env) -> None:
    """The form skips the API's model; the column's length still holds (PostgreSQL answered 500)."""
    org = await env.org()
    admin = await env.member(org)
    browser = await signed_in(env, admin)
    page = await browser.get("/organisation/overview")
    url = "https://example.com/" + "a" * 3000
    response = await browser.post(
        "/organisation/webhook", data={"csrf_token": csrf_of(page.text), "url": url}
    )
    assert response.status_code == 400, response.text[:300]
    assert (await env.client.get(WEBHOOK, headers=org.api_headers)).json()["webhook"] is None
    await browser.aclose()
