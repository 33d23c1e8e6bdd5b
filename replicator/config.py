"""The service configuration: one typed object, loaded from TOML plus environment, validated at start.

Shape (``deploy/replicator.toml`` is a full production example)::

    node_id = "ca-1"                       # goes into every version stamp
    policy = "/etc/replicator/policy.toml"
    journal = "sqlite:////var/lib/replicator/journal.sqlite3"  # 4 slashes: absolute; 3: beside this file
    # or, shared by several processes (replicator/journal/postgres.py; the password only by reference):
    # journal = "postgresql://replicator@db:5432/replicator?password_env=REPLICATOR_JOURNAL_PASSWORD"
    audit_log = "/var/lib/replicator/audit.log"
    audit_retention_months = 24             # the default and the least allowed; see docs/privacy.md
    audit_ship_interval = 60.0              # seconds: records are shipped to both regions this often
    erasure_receipt_key = "/etc/replicator/receipt-signing.pem"  # Ed25519, 0600: signs erasure receipts
    read_preference = "ca"

    [keys]
    keyring = "/var/lib/replicator/keyring.json"     # one node; a cluster shares its key records:
    # store = "postgresql://replicator@db:5432/replicator?password_env=REPLICATOR_JOURNAL_PASSWORD&schema=keys"
    passphrase_env = "REPLICATOR_KEYRING_PASSPHRASE"  # or: key_file = "…"
    # or the KEK in OpenStack Barbican (keys/barbican.py), read with a clouds.yaml cloud's credentials:
    # barbican_secret = "https://barbican.example:9311/v1/secrets/<uuid>"
    # barbican_cloud = "replicator-kek"     # clouds_yaml = "…" optional; no cloud: the OS_* variables

    [regions.ca]
    kind = "azure"
    location = "canadacentral"
    country = "CA"
    container = "replicator"
    connection_string_env = "AZURE_STORAGE_CONNECTION_STRING"
    # or Entra ID tokens instead of a key (docs/operations.md, "Cloud credentials"):
    # account_url = "https://<account>.blob.core.windows.net"
    # entra = "workload-identity"          # or managed-identity, service-principal, default

    [regions.jp]
    kind = "swift"
    provider = "conoha"
    location = "tyo1"
    country = "JP"
    cloud = "conoha-tyo1"                   # a clouds.yaml cloud name
    container = "replicator"

    [tls]                                   # optional: HTTPS, and mTLS with client_ca_file
    cert_file = "/etc/replicator/tls/server.crt"
    key_file = "/etc/replicator/tls/server.key"       # by path only; never the key itself
    client_ca_file = "/etc/replicator/tls/clients-ca.crt"
    client_auth = "optional"                # or "required": no handshake without a client certificate

Without ``policy``, the service uses the packaged default (``replicator/data/policy.toml``,
``DEFAULT_POLICY``; ``deploy/policy.toml`` is the operator's copy of it).

Secrets are never in the file: credentials are named by reference (an
environment variable, a clouds.yaml cloud, a key file) and read into
``SecretStr`` values whose ``repr`` is redacted. Relative paths are relative
to the config file. ``REPLICATOR_<FIELD>`` environment variables override
top-level fields (``REPLICATOR_PORT=8701``).

Every error names the file and line: not exactly two regions, an unknown key, a
missing credential variable, and a region the policy does not allow
(``replicator/residency.py``: outside its ``allowed_countries`` within Canada
and Japan, not one of its ``[[regions]]`` pins, an endpoint elsewhere, two
regions in one country); an error in the policy file names that file's line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import tomllib
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keys.audit import RETENTION_MONTHS
from keys.barbican import check_ref
from keys.policy import PolicyError, ResidencyError, TomlLocator
from keys.receipts import ReceiptKeyError, check_key_file
from replicator.journal import check_journal_url, is_postgresql
from replicator.residency import config_key, policy_for

GiB = 1 << 30
MiB = 1 << 20

_resources = contextlib.ExitStack()  # what _packaged extracted from a zipped package; removed at exit
atexit.register(_resources.close)


def _packaged(resource: str) -> Path:
    """A file shipped in the ``replicator`` package (``replicator/<resource>``), as a filesystem path.

    Found with ``importlib.resources``, so it is wherever the package is installed (a wheel in any
    site-packages, or this source tree), never relative to a checkout. An installed package is a
    directory and this is the file itself; a zipped one is extracted once, for this process.
    """
    return _resources.enter_context(as_file(files("replicator").joinpath(resource)))


# The default access policy: package data. deploy/policy.toml is the operator's byte-identical copy.
DEFAULT_POLICY = _packaged("data/policy.toml")


class ConfigError(ValueError):
    """A configuration that cannot start the service; the message names file and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RegionBase(_Strict):
    country: str  # allowed or not by replicator/residency.py, with the policy (one rule, one place)
    location: str


class LocalRegionConfig(_RegionBase):
    kind: Literal["local"]
    location: str = "local"
    path: Path


class AzureRegionConfig(_RegionBase):
    kind: Literal["azure"]
    container: str = "replicator"
    prefix: str = ""
    connection_string_env: str | None = None  # an environment variable holding the connection string
    account_url: str | None = None
    account_key_env: str | None = None  # with account_url
    # Or Microsoft Entra ID tokens (regions/azure/credential.py), with account_url: which credential,
    # and what it needs (a service principal's secret by file, read again when it changes).
    entra: Literal["default", "workload-identity", "managed-identity", "service-principal"] | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_file: Path | None = None
    token_file: Path | None = None  # workload identity's federated token (default: AZURE_FEDERATED_TOKEN_FILE)
    authority: str | None = None  # a sovereign cloud's Entra host; default login.microsoftonline.com
    ca_file: Path | None = None  # trust this CA for the account URL instead of the system's
    # A streamed put holds up to three blocks (one being read, two in flight; reading ahead within
    # the process's budget: regions/_body.py AheadBudget): 4 MiB keeps many streamed puts at once
    # within the memory goal (docs/performance.md); 50,000 blocks make 195 GiB.
    block_bytes: int = Field(4 * MiB, ge=MiB, le=4000 * MiB)

    @model_validator(mode="after")
    def _one_credential(self):
        given = [bool(self.connection_string_env), bool(self.account_key_env), self.entra is not None]
        if given.count(True) != 1 or (not self.connection_string_env and not self.account_url):
            raise ValueError(
                "give connection_string_env, or account_url with account_key_env, or account_url with entra"
            )
        if self.entra is not None and not str(self.account_url).startswith("https://"):
            raise ValueError("entra tokens are sent over https only: account_url must be https://")
        entra_only = ("tenant_id", "client_id", "client_secret_file", "token_file", "authority")
        if self.entra is None and any(getattr(self, k) is not None for k in entra_only):
            raise ValueError(f"{', '.join(entra_only)} go with entra")
        if self.entra == "service-principal" and not (self.tenant_id and self.client_id and self.client_secret_file):
            raise ValueError("entra = service-principal needs tenant_id, client_id and client_secret_file")
        if self.client_secret_file is not None and self.entra != "service-principal":
            raise ValueError("client_secret_file goes with entra = service-principal")
        if self.token_file is not None and self.entra not in ("workload-identity",):
            raise ValueError("token_file goes with entra = workload-identity")
        return self

    def secret(self) -> SecretStr | None:
        """The connection string or account key from its variable; None with Entra ID tokens."""
        if self.entra is not None:
            return None
        var = self.connection_string_env or self.account_key_env
        value = os.environ.get(var or "")
        if not value:
            raise ValueError(f"environment variable {var} (the Azure credential) is not set")
        return SecretStr(value)


class SwiftRegionConfig(_RegionBase):
    kind: Literal["swift"]
    provider: Literal["conoha", "swift"] = "conoha"
    cloud: str
    clouds_yaml: Path | None = None  # default: openstacksdk's own search path
    container: str = "replicator"
    prefix: str = ""
    # A large put holds up to three segments (one being read, two in flight: regions/_body.py
    # upload_ahead, within the process's read-ahead budget). A segment goes up once it is whole:
    # 16 MiB keeps Swift's upload close behind the body (64 MiB made a 64 MiB PUT wait for all of it).
    segment_bytes: int = Field(16 * MiB, ge=MiB, le=5 * GiB)


RegionConfig = Annotated[LocalRegionConfig | AzureRegionConfig | SwiftRegionConfig, Field(discriminator="kind")]


class KeysConfig(_Strict):
    """``[keys]``: where the key records live (``keyring``, a local file: one node; or ``store``, a
    PostgreSQL URL like the journal's: a cluster) and the KEK that unlocks them."""

    keyring: Path | None = None
    store: str | None = None
    passphrase_env: str | None = None
    key_file: Path | None = None
    barbican_secret: str | None = None  # a Barbican secret's reference (URL): the KEK is its 32-byte payload
    barbican_cloud: str | None = None  # the clouds.yaml cloud that may read it; none: the OS_* variables
    clouds_yaml: Path | None = None  # with barbican_cloud; default: openstacksdk's own search path

    @model_validator(mode="after")
    def _one_kek(self):
        if (self.keyring is None) == (self.store is None):
            raise ValueError("give keyring (a local file) or store (a postgresql:// URL), one of them")
        if self.store is not None and not is_postgresql(self.store):
            raise ValueError("store must be a postgresql:// URL")
        if [self.passphrase_env, self.key_file, self.barbican_secret].count(None) != 2:
            raise ValueError("give passphrase_env, key_file or barbican_secret (one of them)")
        if self.barbican_secret is None and (self.barbican_cloud or self.clouds_yaml):
            raise ValueError("barbican_cloud and clouds_yaml go with barbican_secret")
        if self.clouds_yaml is not None and self.barbican_cloud is None:
            raise ValueError("clouds_yaml goes with barbican_cloud")
        if self.barbican_secret is not None:
            check_ref(self.barbican_secret)
        return self


class TlsConfig(_Strict):
    """``[tls]``: serve HTTPS. The key is named by its path only (0600, never in this file); with
    ``client_ca_file`` clients may present a certificate that CA issued (``client_auth = "optional"``:
    principals bound to a certificate need one, others not) or must (``"required"``: no handshake
    without one)."""

    cert_file: Path  # the server's certificate chain (PEM), leaf first
    key_file: Path  # its private key (PEM)
    client_ca_file: Path | None = None  # CA certificates (PEM) that client certificates must chain to
    client_auth: Literal["optional", "required"] = "optional"

    @model_validator(mode="after")
    def _ca_for_required(self):
        if self.client_auth == "required" and self.client_ca_file is None:
            raise ValueError('client_auth = "required" needs client_ca_file')
        return self


class PrincipalConfig(_Strict):
    name: str
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[str]
    client_subject: str | None = None  # bind the token to a client certificate (keys.policy.Principal)
    client_san: str | None = None


class Limits(_Strict):
    max_object_bytes: int = Field(5 * GiB, ge=1)
    region_concurrency: int = Field(8, ge=1, le=256)  # parallel region calls per worker batch
    request_timeout: float = Field(30.0, gt=0)  # one region call, per attempt
    retry_attempts: int = Field(4, ge=1, le=10)
    straggler_grace: float = Field(2.0, gt=0)  # once one region answered a lookup or stored a
    # small write, how long the other may still take
    no_progress_timeout: float = Field(15.0, gt=0)  # a streamed write's region that moves no bytes
    # this long is cut off (the write is degraded, a journal row copies it later); a slow one is not
    # The SIN check inside containers (keys.sin_containers): bomb guards for one body's gzip, zip and PDF
    # content, each a refusal naming the setting (413 for the two sizes, 422 for the depth).
    scan_max_expansion_ratio: int = Field(100, ge=1)  # decoded bytes per body byte (the first MiB free)
    scan_max_expanded_bytes: int = Field(1 * GiB, ge=1)  # decoded bytes in all
    scan_max_depth: int = Field(3, ge=1, le=16)  # containers inside containers (a zip in a gzip: 2)
    journal_lease: float = Field(60.0, ge=1)  # seconds claimed journal rows stay a worker's; a
    # crashed service's rows wait this long after restart


class ReconcileConfig(_Strict):
    """``[reconcile]``: the nightly reconciler (``replicator reconcile``)."""

    tombstone_grace_days: float = Field(7.0, ge=0)  # a tombstone both regions hold is removed after this
    concurrency: int = Field(16, ge=1, le=256)  # names worked on at once (--concurrency overrides)
    max_delete: int | None = Field(None, ge=0)  # default --max-delete; None: no limit
    lease_ttl: float = Field(300.0, ge=10)  # seconds; renewed every third of it while running
    # Every run's report is kept here, one new file per run (replicator.reconcile.report.keep), for the audit
    # retention; relative to the config file.
    report_dir: Path = Path("reconcile-reports")


class HealthConfig(_Strict):
    """``[health]``: when ``replicator health`` says WARN or CRIT (its flags override these)."""

    probe_timeout: float = Field(10.0, gt=0)  # seconds one probe step may take; then CRIT
    latency_warn_ms: float = Field(2000.0, gt=0)  # a region step slower than this: WARN
    backlog_warn: int = Field(1000, ge=0)  # pending journal rows over this: WARN
    oldest_warn_s: float = Field(3600.0, gt=0)  # oldest pending row older than this: WARN


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPLICATOR_", extra="forbid", frozen=True)

    node_id: str = Field("n1", pattern=r"^[a-z0-9-]{1,32}$")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    policy: Path = DEFAULT_POLICY
    journal: str = "sqlite:///journal.sqlite3"
    audit_log: Path = Path("audit.log")
    # Months audit records are kept (keys.audit: never fewer than 24, the Canadian breach record rule).
    audit_retention_months: int = Field(RETENTION_MONTHS, ge=RETENTION_MONTHS)
    # Seconds between shipping the audit records appended since the last checkpoint to both regions.
    audit_ship_interval: float = Field(60.0, gt=0)
    # The Ed25519 key that signs erasure receipts (keys/receipts.py): a PEM file, mode 0600, by path
    # only. None: receipts are unsigned (the embedded default makes one; production configs name one).
    erasure_receipt_key: Path | None = None
    read_preference: str
    keys: KeysConfig
    regions: dict[str, RegionConfig]
    principals: list[PrincipalConfig] = []
    limits: Limits = Limits()
    reconcile: ReconcileConfig = ReconcileConfig()
    health: HealthConfig = HealthConfig()
    tls: TlsConfig | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment overrides the file

    @model_validator(mode="after")
    def _two_regions(self):
        if len(self.regions) != 2:
            raise ValueError(f"exactly two regions are required, found {len(self.regions)}")
        for name in self.regions:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", name):
                raise ValueError(f"region name {name!r} must match [a-z][a-z0-9]{{0,15}}")
        if self.read_preference not in self.regions:
            raise ValueError(f"read_preference {self.read_preference!r} is not one of the regions")
        return self


def _resolve(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file's relative paths relative to the file, not to the working directory."""

    def rel(value):
        return str(value) if Path(value).is_absolute() else str(base / value)

    for key in ("policy", "audit_log", "erasure_receipt_key"):
        if key in data:
            data[key] = rel(data[key])
    reconcile = data.get("reconcile", {})
    reconcile["report_dir"] = rel(reconcile.get("report_dir", "reconcile-reports"))
    data["reconcile"] = reconcile
    if str(data.get("journal", "")).startswith("sqlite:///"):
        path = data["journal"].removeprefix("sqlite:///")
        data["journal"] = "sqlite:///" + rel(path)
    keys = data.get("keys", {})
    for key in ("keyring", "key_file", "clouds_yaml"):
        if key in keys:
            keys[key] = rel(keys[key])
    tls = data.get("tls", {})
    for key in ("cert_file", "key_file", "client_ca_file"):
        if isinstance(tls, dict) and key in tls:
            tls[key] = rel(tls[key])
    for region in data.get("regions", {}).values():
        for key in ("path", "clouds_yaml", "client_secret_file", "token_file", "ca_file"):
            if isinstance(region, dict) and key in region:
                region[key] = rel(region[key])
    return data


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and check a config file; ``ConfigError`` names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    locate = TomlLocator(text)
    try:
        config = Config(**_resolve(data, path.parent.resolve()))
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{path}:{_line(locate, err['loc'])}: {_where(err['loc'])}{err['msg']}") from None
    try:  # the regions against the policy: its countries, its pins, what the endpoints say
        policy_for(config)
    except PolicyError as e:
        raise ConfigError(f"{e} (the policy of {path})") from None
    except ResidencyError as e:
        line = locate.line(f"regions.{e.region}", key=config_key(config.regions[e.region], e.field))
        raise ConfigError(f"{path}:{line or '?'}: {e}") from None
    for name, region in config.regions.items():
        try:
            if isinstance(region, AzureRegionConfig):
                region.secret()
                for key in ("client_secret_file", "ca_file"):
                    file = getattr(region, key)
                    if file is not None and not file.is_file():
                        raise ValueError(f"{key} {file} does not exist")
            if isinstance(region, SwiftRegionConfig) and region.clouds_yaml and not region.clouds_yaml.is_file():
                raise ValueError(f"clouds.yaml {region.clouds_yaml} does not exist")
        except ValueError as e:
            raise ConfigError(
                f"{path}:{locate.line(f'regions.{name}', key='location')}: region {name!r}: {e}"
            ) from None
    try:  # a PostgreSQL journal's password only by reference (?password_env=VAR), never in the file
        check_journal_url(config.journal)
    except ValueError as e:
        raise ConfigError(f"{path}:{locate.line(None, key='journal')}: {e}") from None
    if config.keys.store is not None:  # the key store's password by reference too
        try:
            check_journal_url(config.keys.store)
        except ValueError as e:
            raise ConfigError(f"{path}:{locate.line('keys', key='store')}: key store: {e}") from None
    # Credentials by reference are checked now, not at the first request that needs them.
    if config.keys.passphrase_env and not os.environ.get(config.keys.passphrase_env):
        raise ConfigError(
            f"{path}:{locate.line('keys', key='passphrase_env')}: environment variable "
            f"{config.keys.passphrase_env} (the keyring passphrase) is not set"
        )
    if config.keys.key_file and not config.keys.key_file.is_file():
        raise ConfigError(
            f"{path}:{locate.line('keys', key='key_file')}: key file {config.keys.key_file} does not exist"
        )
    if config.keys.clouds_yaml and not config.keys.clouds_yaml.is_file():
        raise ConfigError(
            f"{path}:{locate.line('keys', key='clouds_yaml')}: clouds.yaml {config.keys.clouds_yaml} does not exist"
        )
    if config.erasure_receipt_key is not None:  # read by path at start; checked now, never echoed
        try:
            check_key_file(config.erasure_receipt_key)
        except ReceiptKeyError as e:
            raise ConfigError(f"{path}:{locate.line(None, key='erasure_receipt_key')}: {e}") from None
    if config.tls is not None:
        for key in ("cert_file", "key_file", "client_ca_file"):
            file = getattr(config.tls, key)
            if file is not None and not file.is_file():
                raise ConfigError(f"{path}:{locate.line('tls', key=key)}: tls {key} {file} does not exist")
    return config


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("local", "azure", "swift")]
    return f"{'.'.join(parts)}: " if parts else ""


def _line(locate: TomlLocator, loc: tuple) -> int | str:
    """Best line for a pydantic error location such as ('regions', 'jp', 'swift', 'country')."""
    parts = [str(p) for p in loc if p not in ("local", "azure", "swift")]
    if parts[:1] == ["regions"] and len(parts) >= 2:
        line = locate.line(f"regions.{parts[1]}", key=parts[2] if len(parts) > 2 else None)
    elif len(parts) >= 2 and isinstance(loc[0], str) and loc[0] in ("keys", "limits", "health", "tls"):
        line = locate.line(parts[0], key=parts[1])
    elif parts:
        line = locate.line(None, key=parts[0]) or locate.line(parts[0])
    else:
        line = None
    return line or "?"
