"""The tests' connection layer refuses every non-loopback connect, here and in subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import GuardedConnects, StubHosts
from tests.netguard.netguard import ConnectionGuarded
from tests.web_support import AcceptRecorder


@pytest.mark.parametrize(
    ("family", "address"),
    [(socket.AF_INET, ("192.0.2.1", 80)), (socket.AF_INET6, ("2001:db8::1", 80, 0, 0))],
)
def test_a_connect_outside_loopback_is_refused_before_any_packet(
    guarded_connects: GuardedConnects, family: int, address: tuple[object, ...]
) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(ConnectionGuarded, match="refused to connect"):
            sock.connect(address)
        with pytest.raises(ConnectionGuarded):
            sock.connect_ex(address)
        with pytest.raises(OSError):
            sock.getpeername()  # the real connect was never called: no SYN was sent
    assert guarded_connects.attempts() == [f"{address[0]} 80"] * 2
    guarded_connects.clear()


def test_asyncio_connects_are_guarded_too(guarded_connects: GuardedConnects) -> None:
    with pytest.raises(ConnectionGuarded):
        asyncio.run(asyncio.wait_for(asyncio.open_connection("192.0.2.1", 80), 5))
    assert guarded_connects.attempts() == ["192.0.2.1 80"]
    guarded_connects.clear()


def test_loopback_connects_go_through() -> None:
    with AcceptRecorder("127.0.0.2") as recorder:
        socket.create_connection((recorder.host, recorder.port), timeout=2).close()
        with socket.socket(socket.AF_INET6) as sock:
            assert sock.connect_ex(("::1", 9, 0, 0)) != 0  # nobody listens: refused, not guarded
    assert recorder.accepted == 1


def test_a_stubbed_name_resolves_to_its_answers_in_turn(
    stub_hosts: StubHosts,
    guarded_connects: GuardedConnects,
) -> None:
    stub_hosts({"rebind.test": [["203.0.113.9", "2606:4700::1111"], ["127.0.0.2"]]})
    first = {info[4][0] for info in socket.getaddrinfo("rebind.test", 80)}
    assert first == {"203.0.113.9", "2606:4700::1111"}
    assert socket.gethostbyname("rebind.test") == "127.0.0.2"
    assert socket.gethostbyname("REBIND.test.") == "127.0.0.2"  # the last answer repeats
    with pytest.raises(ConnectionGuarded):
        socket.create_connection(("203.0.113.9", 80), timeout=1)
    guarded_connects.clear()


def test_subprocesses_are_guarded_and_their_attempts_recorded(
    stub_hosts: StubHosts,
    guarded_connects: GuardedConnects,
) -> None:
    """The guard reaches subprocesses through PYTHONPATH, and so does the stub resolver."""
    code = (
        "import socket\n"
        "print(socket.gethostbyname('far.test'))\n"
        "socket.create_connection(('far.test', 80), timeout=1)\n"
    )
    env = {**os.environ, **stub_hosts({"far.test": [["198.51.100.7"]]})}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "198.51.100.7"
    assert "ConnectionGuarded: test connection guard: refused to connect" in result.stderr
    assert guarded_connects.attempts() == ["198.51.100.7 80"]
    guarded_connects.clear()
