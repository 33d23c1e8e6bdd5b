"""Who is calling: a bearer token (the policy file's, or the token store's) and, for a principal
bound to a client certificate, the certificate the TLS handshake verified.

Order: the policy file first (its tokens never depend on the token store), then the token store
(:class:`replicator.tokens.index.TokenIndex`): an expired or revoked store token is 401 naming its id
and why; a store that could not be read lately is 503 (fail closed). Then the binding: a bound
principal's token without a client certificate is 401 (the credentials are incomplete), with another
certificate 403. No message quotes the token.
"""

from __future__ import annotations

from aiohttp import web
from cryptography import x509

from keys import Policy, Principal
from replicator import errors
from replicator.http.tls import client_certificate, san_values
from replicator.tokens.index import Refused, TokenIndex

TOKENS = web.AppKey("tokens", TokenIndex)


def authenticate(request: web.Request, policy: Policy, token: str) -> Principal:
    principal = policy.authenticate(token)
    if principal is None:
        index = request.app.get(TOKENS)
        found = index.lookup(token) if index is not None else None
        if isinstance(found, Refused):
            if found.status == 503:
                raise errors.ServiceUnavailable(found.message)
            raise errors.Unauthorized(found.message)
        if found is None:
            raise errors.Unauthorized("the token is not valid")
        principal = found
    if principal.bound:
        check_binding(principal, client_certificate(request))
    return principal


def check_binding(principal: Principal, cert: x509.Certificate | None) -> None:
    """Refuse a bound principal whose request came without its client certificate."""
    if cert is None:
        raise errors.Unauthorized(
            f"principal {principal.name!r} is bound to a client certificate: its token alone is not enough "
            "(connect with mutual TLS and that certificate)"
        )
    if principal.client_subject is not None:
        wanted = x509.Name.from_rfc4514_string(principal.client_subject)
        if cert.subject != wanted:
            raise errors.Forbidden(
                f"the client certificate (subject {cert.subject.rfc4514_string()!r}) is not the one principal "
                f"{principal.name!r} is bound to (subject {principal.client_subject!r})"
            )
    if principal.client_san is not None and principal.client_san not in san_values(cert):
        raise errors.Forbidden(
            f"the client certificate (subject {cert.subject.rfc4514_string()!r}) does not carry the name "
            f"{principal.client_san!r} principal {principal.name!r} is bound to"
        )
