"""How the worker, the API and the CLI authenticate to a Temporal cluster or Temporal Cloud.

The settings follow Temporal's client `envconfig` conventions (the same rules as the `temporal`
CLI and every SDK), spelled as `MISPERS_*` variables so that one prefix configures the service:

Each Mispers variable maps to its envconfig equivalent:

- MISPERS_TEMPORAL_TLS (TEMPORAL_TLS): true/false; see below
- MISPERS_TEMPORAL_TLS_CERT (TEMPORAL_TLS_CLIENT_CERT_PATH): mTLS client certificate
- MISPERS_TEMPORAL_TLS_KEY (TEMPORAL_TLS_CLIENT_KEY_PATH): mTLS client private key
- MISPERS_TEMPORAL_TLS_CA (TEMPORAL_TLS_SERVER_CA_CERT_PATH): CA bundle for the server
- MISPERS_TEMPORAL_TLS_SERVER_NAME (TEMPORAL_TLS_SERVER_NAME): SNI / host name override
- MISPERS_TEMPORAL_API_KEY (TEMPORAL_API_KEY): API key (Temporal Cloud)
- MISPERS_TEMPORAL_GRPC_META (TEMPORAL_GRPC_META_<KEY>): `key=value,key=value`

As in envconfig: TLS switches on by itself when an API key or any TLS file is given; an explicit
`MISPERS_TEMPORAL_TLS=true` asks for TLS with the system trust store and no client certificate;
`MISPERS_TEMPORAL_TLS=false` asks for plaintext (refused here if a TLS file is also given, rather
than silently ignoring it). Files are read and parsed once at start, so a missing, unreadable or
malformed certificate or key stops the process with a message naming the variable, instead of
surfacing later as an opaque handshake failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS

from mispers.errors import ConfigError

TLS = "MISPERS_TEMPORAL_TLS"
TLS_CERT = "MISPERS_TEMPORAL_TLS_CERT"
TLS_KEY = "MISPERS_TEMPORAL_TLS_KEY"
TLS_CA = "MISPERS_TEMPORAL_TLS_CA"
TLS_SERVER_NAME = "MISPERS_TEMPORAL_TLS_SERVER_NAME"
API_KEY = "MISPERS_TEMPORAL_API_KEY"
GRPC_META = "MISPERS_TEMPORAL_GRPC_META"

VARIABLES = (TLS, TLS_CERT, TLS_KEY, TLS_CA, TLS_SERVER_NAME, API_KEY, GRPC_META)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class TemporalConnection:
    """Validated connection security settings (certificate material already read)."""

    tls_requested: bool | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    server_ca: bytes | None = None
    server_name: str | None = None
    api_key: str | None = None
    grpc_meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def uses_tls(self) -> bool:
        kwargs = self.connect_kwargs()
        return bool(kwargs.get("tls"))

    def describe(self) -> str:
        """One log-safe line: which mechanisms are on, never the material itself."""
        parts = ["tls" if self.uses_tls else "plaintext"]
        if self.client_cert:
            parts.append("mtls-client-cert")
        if self.server_ca:
            parts.append("custom-ca")
        if self.api_key:
            parts.append("api-key")
        return "+".join(parts)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `temporalio.client.Client.connect` (tls, api_key,
        rpc_metadata), built by envconfig's own profile so its rules apply unchanged."""
        tls: ClientConfigTLS | None = None
        has_tls_material = any((self.client_cert, self.server_ca, self.server_name))
        if self.tls_requested is not None or has_tls_material:
            tls = ClientConfigTLS(
                disabled=None if self.tls_requested is None else not self.tls_requested,
                server_name=self.server_name,
                server_root_ca_cert=self.server_ca,
                client_cert=self.client_cert,
                client_private_key=self.client_key,
            )
        profile = ClientConfigProfile(api_key=self.api_key, tls=tls, grpc_meta=dict(self.grpc_meta))
        config = dict(profile.to_client_connect_config())
        return {k: v for k, v in config.items() if k in ("tls", "api_key", "rpc_metadata")}


def load_connection(env: Mapping[str, str]) -> TemporalConnection:
    """Read and check the `MISPERS_TEMPORAL_*` security variables; ConfigError names the
    variable at fault."""
    tls_requested = _bool(env, TLS)
    cert_path = _value(env, TLS_CERT)
    key_path = _value(env, TLS_KEY)
    if cert_path and not key_path:
        raise ConfigError(f"{TLS_CERT} is set but {TLS_KEY} is not: mTLS needs both")
    if key_path and not cert_path:
        raise ConfigError(f"{TLS_KEY} is set but {TLS_CERT} is not: mTLS needs both")
    client_cert = _read_certs(TLS_CERT, cert_path) if cert_path else None
    client_key = _read_key(TLS_KEY, key_path) if key_path else None
    if client_cert and client_key:
        _check_pair(client_cert, client_key)
    ca_path = _value(env, TLS_CA)
    server_ca = _read_certs(TLS_CA, ca_path) if ca_path else None
    server_name = _value(env, TLS_SERVER_NAME)
    if tls_requested is False and (client_cert or server_ca or server_name):
        given = [
            n
            for n, v in ((TLS_CERT, cert_path), (TLS_CA, ca_path), (TLS_SERVER_NAME, server_name))
            if v
        ]
        raise ConfigError(f"{TLS}=false contradicts {', '.join(given)}: remove one or the other")
    api_key = env.get(API_KEY) or None
    if api_key is not None and (api_key != api_key.strip() or any(c.isspace() for c in api_key)):
        raise ConfigError(
            f"{API_KEY}: contains whitespace or a line break (a secret file saved with a "
            "trailing newline?): store the key alone"
        )
    return TemporalConnection(
        tls_requested=tls_requested,
        client_cert=client_cert,
        client_key=client_key,
        server_ca=server_ca,
        server_name=server_name,
        api_key=api_key,
        grpc_meta=_meta(env),
    )


def connect_kwargs(env: Mapping[str, str]) -> dict[str, Any]:
    """tls / api_key / rpc_metadata keyword arguments for `Client.connect`, from the
    environment; empty when nothing is configured (plaintext, as for the embedded server)."""
    return load_connection(env).connect_kwargs()


def _value(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = _value(env, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: must be true or false")


def _read(name: str, path: str) -> bytes:
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}={path!r}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}={path!r}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"{name}={path!r}: cannot read: {exc.strerror}") from None
    if not data.strip():
        raise ConfigError(f"{name}={path!r}: the file is empty")
    return data


def _read_certs(name: str, path: str) -> bytes:
    data = _read(name, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"{name}={path!r}: not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
        ) from None
    if not certs:  # pragma: no cover - the loader raises on an empty bundle
        raise ConfigError(f"{name}={path!r}: no certificate in the file")
    return data


def _read_key(name: str, path: str) -> bytes:
    data = _read(name, path)
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{name}={path!r}: the private key is encrypted; supply it unencrypted (PKCS#8 PEM)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{name}={path!r}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')"
        ) from None
    return data


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if cert.public_key().public_bytes(enc, fmt) != key.public_key().public_bytes(enc, fmt):
        raise ConfigError(
            f"{TLS_KEY} does not belong to the certificate in {TLS_CERT} (public keys differ)"
        )


def _meta(env: Mapping[str, str]) -> dict[str, str]:
    raw = _value(env, GRPC_META)
    if raw is None:
        return {}
    meta: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key or not value.strip():
            raise ConfigError(f"{GRPC_META}: {item.strip()!r} is not key=value")
        meta[key] = value.strip()
    return meta
