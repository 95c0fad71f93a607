"""The tests' connection layer: nothing a test runs may connect outside this machine.

Installed in the pytest process (``tests/conftest.py``) and, through ``sitecustomize.py`` in
this directory (put first on ``PYTHONPATH`` for every subprocess the tests start), in every
``lookalike serve``, ``lookalike crawl`` and ``scrapy crawl`` they run. A connect to anything
but 127.0.0.0/8 or ::1 raises :class:`ConnectionGuarded` before the real connect is called, so
no packet leaves, and is recorded (appended to the file named by ``$LOOKALIKE_TEST_CONNECT_LOG``,
or to :data:`refused` without one) so a test fails even if the code under test
swallows the error.

Name resolution can be stubbed for chosen names: :data:`hosts` (or ``$LOOKALIKE_TEST_HOSTS``,
JSON) maps a name to its successive answers, each a list of addresses; every lookup takes the
next answer and the last one repeats, which models DNS rebinding. Other names resolve as usual.
:data:`delays` makes a stubbed name's lookups slow, as a name server its owner runs can be.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from typing import Any

CONNECT_LOG_VARIABLE = "LOOKALIKE_TEST_CONNECT_LOG"
HOSTS_VARIABLE = "LOOKALIKE_TEST_HOSTS"

refused: list[str] = []  # guarded connect attempts, as "host port", when there is no log file
hosts: dict[str, list[list[str]]] = {}  # name → successive answers (stub resolver)
_lookups: dict[str, int] = {}  # name → how many answers have been taken
delays: dict[str, float] = {}  # stubbed name → seconds each lookup takes

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname


class ConnectionGuarded(PermissionError):
    """A test tried to connect outside this machine."""


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address in ipaddress.ip_network("127.0.0.0/8") or address == ipaddress.ip_address("::1")


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX and the like stay on this machine
    host, port = str(address[0]), address[1]
    if not all(is_loopback(a) for a in _addresses_of(host, port, sock.family)):
        attempt = f"{host} {port}"
        log = os.environ.get(CONNECT_LOG_VARIABLE)
        if log:
            with open(log, "a") as out:
                out.write(attempt + "\n")
        else:
            refused.append(attempt)
        raise ConnectionGuarded(f"test connection guard: refused to connect to {host} port {port}")


def _addresses_of(host: str, port: int, family: int) -> list[str]:
    """What a connect to ``host`` would reach, without taking a stubbed answer."""
    stubbed = hosts.get(_key(host))
    if stubbed is not None:
        return [a for answer in stubbed for a in answer]
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return [info[4][0] for info in _real_getaddrinfo(host, port, family, socket.SOCK_STREAM)]
    return [host]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _real_connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def _answer(name: str) -> list[str] | None:
    key = _key(name)
    answers = hosts.get(key)
    if answers is None:
        return None
    taken = _lookups.get(key, 0)
    _lookups[key] = taken + 1
    time.sleep(delays.get(key, 0))
    return answers[min(taken, len(answers) - 1)]


def getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[Any]:
    answer = _answer(host) if isinstance(host, str) else None
    if answer is None:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    results = []
    for text in answer:
        address = ipaddress.ip_address(text)
        kind = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        if family in (0, kind):
            sockaddr = (text, int(port or 0)) + ((0, 0) if kind == socket.AF_INET6 else ())
            results.append((kind, type or socket.SOCK_STREAM, proto or 6, "", sockaddr))
    if not results:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return results


def gethostbyname(name: str) -> str:
    answer = _answer(name)
    if answer is None:
        return _real_gethostbyname(name)
    ipv4 = [a for a in answer if ipaddress.ip_address(a).version == 4]
    if not ipv4:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ipv4[0]


def install() -> None:
    """Guard connects and stub the resolver in this process (idempotent)."""
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    stub(json.loads(os.environ.get(HOSTS_VARIABLE) or "{}"))


def stub(names: dict[str, list[list[str]]], slow: dict[str, float] | None = None) -> None:
    """Resolve exactly these names to these successive answers from now on (and no others),
    each lookup of a name in ``slow`` taking that many seconds."""
    hosts.clear()
    _lookups.clear()
    delays.clear()
    delays.update({_key(name): seconds for name, seconds in (slow or {}).items()})
    hosts.update({_key(name): answers for name, answers in names.items()})
