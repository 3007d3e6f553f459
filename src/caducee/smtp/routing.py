"""Where to deliver a destination domain: the sandbox route table, else DNS MX (RFC 5321 §5.1).

MX records are tried by preference; a domain without MX falls back to its address (the
"implicit MX"); a null MX (RFC 7505) or a domain that does not exist is a permanent failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RouteError", "Router", "parse_hostport"]


@dataclass(frozen=True, slots=True)
class RouteError(Exception):
    """No route; ``permanent`` failures produce a DSN at once (``status`` is RFC 3463)."""

    reason: str
    permanent: bool
    status: str

    def __str__(self) -> str:
        return self.reason


def parse_hostport(text: str, default_port: int = 25) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), default_port
    host = host.strip("[]")
    return host, int(port)


class Router:
    """Resolves a destination domain to an ordered list of (host, port)."""

    def __init__(self, routes: Mapping[str, str], *, port: int = 25) -> None:
        self._routes = {k.lower().rstrip("."): v for k, v in routes.items()}
        self._port = port

    def set_route(self, domain: str, hostport: str) -> None:
        """Adds or replaces a static route (sandbox, tests: ports known after binding)."""
        self._routes[domain.lower().rstrip(".")] = hostport

    async def destinations(self, domain: str) -> list[tuple[str, int]]:
        domain = domain.lower().rstrip(".")
        route = self._routes.get(domain)
        if route is not None:
            return [parse_hostport(route, self._port)]
        return await self._mx(domain)

    async def _mx(self, domain: str) -> list[tuple[str, int]]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        try:
            answer = await dns.asyncresolver.resolve(domain, "MX", lifetime=20.0)
        except dns.resolver.NXDOMAIN as exc:
            raise RouteError(f"domain {domain} does not exist", True, "5.1.2") from exc
        except dns.resolver.NoAnswer:
            return [(domain, self._port)]  # implicit MX (RFC 5321 §5.1)
        except dns.exception.DNSException as exc:
            raise RouteError(f"MX lookup for {domain} failed: {exc}", False, "4.4.3") from exc
        records = sorted(
            ((int(r.preference), str(r.exchange).rstrip(".")) for r in answer),
            key=lambda pr: pr[0],
        )
        if len(records) == 1 and records[0][1] in ("", "."):
            raise RouteError(f"domain {domain} accepts no mail (null MX)", True, "5.1.10")
        return [(host, self._port) for _, host in records if host]
