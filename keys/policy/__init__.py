"""The access policy: the model and its decisions (``model``), the TOML
loader (``loader``), the residency rule for the service config's regions
(``residency``) and the service-token helpers (``tokens``)."""

from keys.policy.loader import TomlLocator, load_policy, parse_policy
from keys.policy.model import (
    ALLOWED_COUNTRIES,
    UNTIL_ERASURE,
    DataClass,
    Decision,
    Policy,
    PolicyError,
    Principal,
    RegionRule,
    Verb,
    check_binding,
    check_region_rule,
    check_scope,
)
from keys.policy.residency import Endpoint, Placement, ResidencyError, check_residency
from keys.policy.tokens import TOKEN_PREFIX, generate_token, token_hash

__all__ = [
    "ALLOWED_COUNTRIES",
    "TOKEN_PREFIX",
    "UNTIL_ERASURE",
    "DataClass",
    "Decision",
    "Endpoint",
    "Placement",
    "Policy",
    "PolicyError",
    "Principal",
    "RegionRule",
    "ResidencyError",
    "TomlLocator",
    "Verb",
    "check_binding",
    "check_region_rule",
    "check_residency",
    "check_scope",
    "generate_token",
    "load_policy",
    "parse_policy",
    "token_hash",
]
