"""The webhook sender's pure parts: the backoff schedule and the address checks (a resolver
function stands in for DNS so that names can resolve to any address)."""

from __future__ import annotations

import socket

import pytest

from textlstm.serving.webhooks import Refused, address_allowed, backoff_s, check_address, where
from textlstm.wire.events import parse_allow_list

NONE = parse_allow_list("")


def resolver(*addresses: str):  # noqa: ANN201
    def resolve(host: str, port: int, type: int = 0):  # noqa: A002, ANN202
        fam = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(fam, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    lows = [backoff_s(n, initial=1, maximum=60, rand=0.0) for n in range(1, 10)]
    highs = [backoff_s(n, initial=1, maximum=60, rand=0.999999) for n in range(1, 10)]
    assert lows == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert [round(h) for h in highs] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert all(lo <= backoff_s(n, initial=1, maximum=60, rand=0.5) <= hi
               for n, lo, hi in zip(range(1, 10), lows, highs, strict=True))  # fmt: skip


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "10.1.2.3",  # private
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata services
        "100.64.0.1",  # shared address space
        "0.0.0.0",  # noqa: S104 - unspecified
        "224.0.0.1",  # multicast
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
    ],
)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    assert not address_allowed(address, "evil.example", NONE)
    with pytest.raises(Refused, match="internal address .*TEXTLSTM_WEBHOOK_ALLOW"):
        check_address("evil.example", 80, NONE, resolver(address))


def test_public_addresses_pass() -> None:
    assert check_address("hooks.example", 443, NONE, resolver("93.184.216.34")) == "93.184.216.34"
    assert address_allowed("2606:4700::6810:85e5", "h", NONE)


def test_allow_list_lets_chosen_hosts_and_networks_through() -> None:
    allow = parse_allow_list("127.0.0.1,10.1.0.0/16,hooks.internal")
    assert address_allowed("127.0.0.1", "localhost", allow)
    assert address_allowed("10.1.200.3", "x", allow)
    assert not address_allowed("10.2.0.1", "x", allow)
    assert address_allowed("10.9.9.9", "hooks.internal", allow)  # the name is trusted
    assert not address_allowed("::1", "x", allow)  # 127.0.0.1 does not allow ::1


def test_a_name_with_any_internal_address_is_refused() -> None:
    with pytest.raises(Refused, match="10.0.0.7"):
        check_address("mixed.example", 80, NONE, resolver("93.184.216.34", "10.0.0.7"))


def test_logs_show_no_path_or_query() -> None:
    assert where("https://h.example:8443/hook/t0ken?k=v") == "https://h.example:8443/…"
