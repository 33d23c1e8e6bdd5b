"""The HTTP proxy the environment names for a region's endpoint, read once.

``HTTP_PROXY`` / ``HTTPS_PROXY`` (either case) name the proxy for ``http://``
and ``https://`` endpoints; ``NO_PROXY`` lists the hosts that bypass it (a
host or a domain suffix, or ``*``), read by urllib's rules, which requests
shares for names (Keystone, which the Swift driver reaches through requests,
is bypassed alike). The environment is read when a driver is made: looking it
up on every request (aiohttp's ``trust_env``, azure-core's
``use_env_settings``) cost worker-thread hops on every call.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


class EnvProxies:
    def __init__(self, found: Mapping[str, str]) -> None:
        self._found = dict(found)  # scheme -> proxy URL, and "no" -> NO_PROXY's list
        self._of: dict[str, str | None] = {}

    @classmethod
    def read(cls) -> EnvProxies:
        """The environment's proxies as they are now."""
        return cls(urllib.request.getproxies_environment())

    def for_url(self, url: str) -> str | None:
        """The proxy URL for requests to ``url``; None to connect directly."""
        try:
            return self._of[url]
        except KeyError:
            pass
        parts = urlsplit(url)
        proxy = self._found.get(parts.scheme)
        host = parts.netloc.rpartition("@")[2]  # host[:port]: NO_PROXY may name either
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # CPython has it; typeshed not
        chosen = proxy if proxy and not bypass(host, self._found) else None
        self._of[url] = chosen
        return chosen
