"""Where the service config meets the policy: its regions checked by the residency rule.

``policy_for(config)`` loads the policy file the config names and checks the
config's regions against it (``keys.policy.check_residency``: the policy's
``allowed_countries`` within Canada and Japan, its ``[[regions]]`` pins, what
the endpoints say, one region per country). ``replicator.config.load_config``
calls it for every command (a refusal names the config's file and line) and
``replicator.runtime.policy_of`` again for the policy the service runs on, so
a config built in code cannot skip it.

What each region's endpoints are taken from: an Azure region's ``account_url``,
the blob endpoint of its connection string (``BlobEndpoint``, or the account
and ``EndpointSuffix``; the host only, never the key) and its Entra
``authority``; a Swift region's clouds.yaml cloud (its ``region_name`` and its
``auth_url`` host, read without authenticating; a cloud that cannot be read
is left to the driver, which fails on first use as before).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from keys.policy import Endpoint, Placement, Policy, check_residency, load_policy

if TYPE_CHECKING:
    from replicator.config import Config


def policy_for(config: Config) -> Policy:
    """The policy file ``config`` names, with its regions checked against it.
    Raises PolicyError (the policy file is wrong) or ResidencyError (a region it does not allow)."""
    policy = load_policy(config.policy)
    check_residency(policy, [placement(name, region) for name, region in config.regions.items()])
    return policy


def placement(name: str, region: Any) -> Placement:
    """One configured region (``replicator.config.RegionConfig``) as the residency rule sees it."""
    endpoints: list[Endpoint] = []
    if region.kind == "azure":
        provider = "azure"
        for field, host in (
            ("account_url", _host(region.account_url)),
            ("connection_string_env", _connection_string_host(region.connection_string_env)),
            ("authority", _host(region.authority)),
        ):
            if host:
                endpoints.append(Endpoint(field, host))
    elif region.kind == "swift":
        provider = region.provider
        region_name, auth_host = _cloud_place(region.cloud, region.clouds_yaml)
        if region_name:
            endpoints.append(Endpoint("cloud", region_name, region=True))
        if auth_host:
            endpoints.append(Endpoint("cloud", auth_host))
    else:
        provider = region.kind
    return Placement(name, provider, region.location, region.country, tuple(endpoints))


def config_key(region: Any, field: str) -> str | None:
    """The config key (in ``[regions.<name>]``) holding ``field`` of a ResidencyError; None: the table."""
    if field == "name":
        return None
    if field == "provider" and region.kind != "swift":
        return "kind"
    return field


def _host(url: str | None) -> str | None:
    if not url:
        return None
    return urlsplit(url if "://" in url else f"https://{url}").hostname


def _connection_string_host(variable: str | None) -> str | None:
    """The blob endpoint's host of the connection string in ``variable`` (unset: None; load_config says so)."""
    parts: Mapping[str, str] = {
        key.strip().lower(): value.strip()
        for key, _, value in (item.partition("=") for item in os.environ.get(variable or "", "").split(";"))
    }
    if parts.get("blobendpoint"):
        return _host(parts["blobendpoint"])
    if parts.get("accountname") and parts.get("endpointsuffix"):
        return f"{parts['accountname']}.blob.{parts['endpointsuffix']}"
    return None


def _cloud_place(cloud: str, clouds_yaml: os.PathLike[str] | None) -> tuple[str | None, str | None]:
    from keystoneauth1.exceptions import ClientException
    from openstack.exceptions import SDKException

    from regions.swift.auth import cloud_place

    try:
        return cloud_place(cloud, None if clouds_yaml is None else os.fspath(clouds_yaml))
    except (SDKException, ClientException, OSError, ValueError):  # unreadable: the driver will say why
        return None, None
