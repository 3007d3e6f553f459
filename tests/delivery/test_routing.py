from __future__ import annotations

from caducee.smtp.routing import Router, parse_hostport


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert parse_hostport("[::1]:25") == ("::1", 25)
    assert parse_hostport("mx.example.test") == ("mx.example.test", 25)


async def test_static_routes_win_and_are_case_insensitive() -> None:
    router = Router({"CH-B.mssante.test.": "127.0.0.1:2500"})
    assert await router.destinations("ch-b.MSSANTE.test") == [("127.0.0.1", 2500)]
    router.set_route("ch-c.mssante.test", "127.0.0.1:2600")
    assert await router.destinations("ch-c.mssante.test") == [("127.0.0.1", 2600)]
