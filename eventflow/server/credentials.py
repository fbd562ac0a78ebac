"""The credentials the HTTP server accepts and the principals they prove, without the web
framework: read and operate tokens (from the environment or secret files, compared in
constant time), signed session cookies, and the user a trusted login proxy names.

:mod:`eventflow.server.auth` applies them to requests; the CLI reads them before it starts
a server, to refuse one open beyond loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eventflow.config.models import AuthConfig, TrustedProxyConfig
from eventflow.errors import EventflowError

Role = Literal["read", "operate"]
RANK: dict[Role, int] = {"read": 1, "operate": 2}
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout"})
"""Open whatever is configured: probes, and the sign-in that gives the page its session."""
MACHINE_PREFIX = "/hooks/"
"""Webhooks: for machines, authenticated by their sensor's own ``auth``."""
LOOPBACK_NAMES = frozenset({"localhost"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a name safe to log (never the token) and what it may do."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


ANONYMOUS = Principal("anonymous", "operate")
"""Everyone, when no credential is configured."""


@dataclass(frozen=True)
class Token:
    """One configured token: its value (kept out of ``repr``) and the principal it proves."""

    secret: bytes = field(repr=False)
    principal: Principal


def fingerprint(secret: bytes) -> str:
    """What names a token in logs: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret).hexdigest()[:8]


def _token(secret: str, role: Role) -> Token:
    raw = secret.encode()
    return Token(raw, Principal(f"{role}-token:{fingerprint(raw)}", role))


def _file_tokens(path: Path, role: Role, setting: str) -> list[Token]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise EventflowError(
            f"cannot read the {role} tokens of `server.auth.{setting}` ({path}): {exc.strerror}",
            hint="fix the path (relative to the pipeline file) or the file's permissions",
        ) from exc
    tokens = [_token(line.strip(), role) for line in lines if line.strip()]
    if not tokens:
        raise EventflowError(
            f"`server.auth.{setting}` ({path}) holds no token",
            hint="write one token a line, e.g. `openssl rand -hex 32 > FILE`",
        )
    return tokens


@dataclass(frozen=True)
class Credentials:
    """Every credential the server accepts, loaded once at start."""

    tokens: tuple[Token, ...]
    proxy: TrustedProxy | None
    metrics_public: bool
    session_ttl: float

    @property
    def configured(self) -> bool:
        return bool(self.tokens) or self.proxy is not None

    def token(self, sent: str) -> Token | None:
        """The configured token ``sent`` is (the operate one where a value is both). Every
        token is compared, in constant time, whatever matches: the answer's timing says
        nothing about which one nearly did."""
        raw, found = sent.encode(), None
        for token in self.tokens:
            if hmac.compare_digest(raw, token.secret) and (
                found is None or token.principal.may(found.principal.role)
            ):
                found = token
        return found


def load_credentials(
    config: AuthConfig, base_dir: Path, environ: Mapping[str, str] = os.environ
) -> Credentials:
    """The tokens of ``config``'s environment variables and files (relative to
    ``base_dir``); raises :class:`EventflowError` for a file that cannot be read."""
    tokens: list[Token] = []
    sources: tuple[tuple[Role, str, str | None, str], ...] = (
        ("read", config.read_token_env, config.read_token_file, "read_token_file"),
        ("operate", config.operate_token_env, config.operate_token_file, "operate_token_file"),
    )
    for role, env, file, setting in sources:
        if environ.get(env, "").strip():
            tokens.append(_token(environ[env].strip(), role))
        if file is not None:
            tokens.extend(_file_tokens(base_dir / file, role, setting))
    proxy = TrustedProxy(config.trusted_proxy) if config.trusted_proxy else None
    return Credentials(
        tuple(tokens), proxy, config.metrics == "public", config.session_ttl.total_seconds()
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bound address) is reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TrustedProxy:
    """The user a login proxy names in its headers, believed only from its addresses."""

    def __init__(self, config: TrustedProxyConfig) -> None:
        self.config = config
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(a, strict=False) for a in config.from_
        )

    def principal(self, client: str | None, headers: Mapping[str, str]) -> Principal | None:
        """The proxy's user, or None when the request did not come through the proxy
        (``headers`` is looked up case-insensitively, as starlette's are)."""
        user = headers.get(self.config.header_user, "").strip()
        if not user or client is None or not self._trusted(client):
            return None
        if self.config.header_roles is None:
            return Principal(user, "operate")
        groups = {g.strip() for g in headers.get(self.config.header_roles, "").split(",")}
        if groups & set(self.config.operate_roles):
            return Principal(user, "operate")
        if not self.config.read_roles or groups & set(self.config.read_roles):
            return Principal(user, "read")
        return None

    def _trusted(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed session cookies: the principal and an expiry, signed with a key derived from
    the token that signed in. The cookie never holds the token; rotating the token ends its
    sessions, and they survive a restart and work across workers with the same token."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    @staticmethod
    def _mac(token: Token, payload: bytes) -> bytes:
        key = hmac.new(token.secret, b"eventflow session v1", hashlib.sha256).digest()
        return hmac.new(key, payload, hashlib.sha256).digest()

    def issue(self, token: Token, now: float) -> str:
        payload = json.dumps(
            {"n": token.principal.name, "e": int(now + self.credentials.session_ttl)}
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(token, payload))}"

    def principal(self, cookie: str, now: float) -> Principal | None:
        """The principal of a valid, unexpired cookie, or None."""
        encoded, _, mac = cookie.partition(".")
        try:
            payload, signature = _unb64(encoded), _unb64(mac)
            claims = json.loads(payload)
            name, expiry = claims["n"], float(claims["e"])
        except (ValueError, TypeError, KeyError):
            return None
        if expiry < now:
            return None
        for token in self.credentials.tokens:
            if token.principal.name == name and hmac.compare_digest(
                signature, self._mac(token, payload)
            ):
                return token.principal
        return None
