"""Connection security (mispers/engine/connection.py): the MISPERS_TEMPORAL_* variables become
Client.connect keyword arguments by envconfig's rules, a bad file stops start-up with a message
naming the variable, and a real mTLS handshake through a TLS front to the dev server works."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from mispers.config import ConfigError, load_settings
from mispers.engine import connection
from mispers.engine.client import connect
from mispers.engine.connection import connect_kwargs, load_connection
from mispers.security.keyring import KeyRing
from tests.deploy.pki import TestCA, encrypted_key_pem, self_signed


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed().write(tmp_path, "client")


def test_nothing_configured_means_plaintext() -> None:
    assert connect_kwargs({}) == {}
    assert connect_kwargs({"MISPERS_TEMPORAL_ADDRESS": "temporal:7233"}) == {}
    assert load_connection({}).describe() == "plaintext"


def test_mtls_files_become_a_tls_config(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    ca = tmp_path / "ca.crt"
    ca.write_bytes(TestCA().cert_pem)
    kwargs = connect_kwargs(
        {
            "MISPERS_TEMPORAL_TLS_CERT": str(cert),
            "MISPERS_TEMPORAL_TLS_KEY": str(key),
            "MISPERS_TEMPORAL_TLS_CA": str(ca),
            "MISPERS_TEMPORAL_TLS_SERVER_NAME": "temporal.example.internal",
        }
    )
    assert set(kwargs) == {"tls"}
    tls = kwargs["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == cert.read_bytes()
    assert tls.client_private_key == key.read_bytes()
    assert tls.server_root_ca_cert == ca.read_bytes()
    assert tls.domain == "temporal.example.internal"


def test_api_key_switches_tls_on_like_envconfig() -> None:
    kwargs = connect_kwargs({"MISPERS_TEMPORAL_API_KEY": "abc.def-123"})
    assert kwargs == {"api_key": "abc.def-123", "tls": True}
    # envconfig: an explicit TLS=false wins (e.g. a plaintext sidecar proxy adds TLS).
    plain = connect_kwargs({"MISPERS_TEMPORAL_API_KEY": "k", "MISPERS_TEMPORAL_TLS": "false"})
    assert plain == {"api_key": "k", "tls": False}


def test_tls_true_alone_uses_system_roots() -> None:
    kwargs = connect_kwargs({"MISPERS_TEMPORAL_TLS": "yes"})
    tls = kwargs["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert is None and tls.server_root_ca_cert is None


def test_grpc_metadata() -> None:
    kwargs = connect_kwargs(
        {"MISPERS_TEMPORAL_GRPC_META": "Temporal-Namespace=ns.acct, x-team=mispers"}
    )
    assert kwargs == {"rpc_metadata": {"temporal-namespace": "ns.acct", "x-team": "mispers"}}


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"MISPERS_TEMPORAL_TLS": "maybe"}, "MISPERS_TEMPORAL_TLS", "true or false"),
        ({"MISPERS_TEMPORAL_API_KEY": "key\n"}, "MISPERS_TEMPORAL_API_KEY", "line break"),
        ({"MISPERS_TEMPORAL_GRPC_META": "novalue"}, "MISPERS_TEMPORAL_GRPC_META", "key=value"),
        ({"MISPERS_TEMPORAL_TLS_CA": "/nonexistent/ca.pem"}, "MISPERS_TEMPORAL_TLS_CA", "no such"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], variable: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        connect_kwargs(env)
    assert variable in str(err.value)
    assert words in str(err.value)


def test_cert_without_key_and_key_without_cert(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match="MISPERS_TEMPORAL_TLS_KEY is not"):
        connect_kwargs({"MISPERS_TEMPORAL_TLS_CERT": str(cert)})
    with pytest.raises(ConfigError, match="MISPERS_TEMPORAL_TLS_CERT is not"):
        connect_kwargs({"MISPERS_TEMPORAL_TLS_KEY": str(key)})


def test_missing_empty_and_garbage_files(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    missing = tmp_path / "gone.pem"
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_CERT=.*no such file"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(missing), "MISPERS_TEMPORAL_TLS_KEY": str(key)}
        )
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_KEY=.*empty"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(cert), "MISPERS_TEMPORAL_TLS_KEY": str(empty)}
        )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_CERT=.*not a PEM certificate"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(garbage), "MISPERS_TEMPORAL_TLS_KEY": str(key)}
        )
    # A certificate given where the key should be: the commonest mix-up.
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_KEY=.*not a PEM private key"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(cert), "MISPERS_TEMPORAL_TLS_KEY": str(cert)}
        )
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_CA=.*directory"):
        connect_kwargs({"MISPERS_TEMPORAL_TLS_CA": str(tmp_path)})


def test_encrypted_key_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = pair
    locked = tmp_path / "locked.key"
    locked.write_bytes(encrypted_key_pem())
    with pytest.raises(ConfigError, match=r"MISPERS_TEMPORAL_TLS_KEY=.*encrypted"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(cert), "MISPERS_TEMPORAL_TLS_KEY": str(locked)}
        )


def test_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed("a").write(tmp_path, "a")
    _, other_key = self_signed("b").write(tmp_path, "b")
    with pytest.raises(ConfigError, match="does not belong"):
        connect_kwargs(
            {"MISPERS_TEMPORAL_TLS_CERT": str(cert), "MISPERS_TEMPORAL_TLS_KEY": str(other_key)}
        )


def test_tls_false_with_tls_files_is_a_contradiction(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    env = {
        "MISPERS_TEMPORAL_TLS": "false",
        "MISPERS_TEMPORAL_TLS_CERT": str(cert),
        "MISPERS_TEMPORAL_TLS_KEY": str(key),
    }
    with pytest.raises(
        ConfigError, match=r"MISPERS_TEMPORAL_TLS=false contradicts MISPERS_TEMPORAL_TLS_CERT"
    ):
        connect_kwargs(env)


def test_load_settings_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    env = {
        "MISPERS_TEMPORAL_ADDRESS": "temporal:7233",
        "MISPERS_TEMPORAL_TLS_CA": str(tmp_path / "x"),
    }
    with pytest.raises(ConfigError, match="MISPERS_TEMPORAL_TLS_CA"):
        load_settings(env)


def test_secrets_stay_out_of_settings_repr() -> None:
    settings = load_settings(
        {
            "MISPERS_TEMPORAL_API_KEY": "sekrit-key",
            "MISPERS_SMTP_USERNAME": "u",
            "MISPERS_SMTP_PASSWORD": "sekrit-pw",
        }
    )
    assert "sekrit" not in repr(settings)
    assert "sekrit" not in settings.connection.describe()
    # The connection is read once, at start, and kept on the settings for every client.
    assert settings.connection.connect_kwargs()["api_key"] == "sekrit-key"


def test_every_variable_is_documented_in_the_module() -> None:
    doc = connection.__doc__ or ""
    for name in connection.VARIABLES:
        assert name in doc


# --- a real handshake ---------------------------------------------------------------------------


@dataclass
class TlsFront:
    """A TLS terminator in front of the dev server's plaintext gRPC port: it requires a client
    certificate signed by `ca` and records the common name of each client it let through."""

    port: int
    accepted: list[str] = field(default_factory=list)
    refused: int = 0


@contextlib.contextmanager
def _server_context(ca: TestCA, server_cert: Path, server_key: Path) -> Iterator[ssl.SSLContext]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(server_cert, server_key)
    ctx.load_verify_locations(cadata=ca.cert_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    yield ctx


@contextlib.asynccontextmanager
async def tls_front(upstream: str, ctx: ssl.SSLContext) -> AsyncIterator[TlsFront]:
    host, _, port = upstream.rpartition(":")
    front = TlsFront(port=0)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item[0] for item in peer.get("subject", ()))
        front.accepted.append(str(subject.get("commonName", "")))
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    front.port = server.sockets[0].getsockname()[1]
    try:
        yield front
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.integration
async def test_mtls_handshake_through_a_tls_front(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ca = TestCA()
    server_cert, server_key = ca.issue("localhost", server=True).write(tmp_path, "server")
    client_cert, client_key = ca.issue("mispers-worker", server=False).write(tmp_path, "worker")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    upstream = dev_env.client.service_client.config.target_host
    with _server_context(ca, server_cert, server_key) as ctx:
        async with tls_front(upstream, ctx) as front:
            KeyRing.create(tmp_path / "keys.json")  # an external server: the ring must exist
            base = {
                "MISPERS_DATA_DIR": str(tmp_path),
                "MISPERS_TEMPORAL_ADDRESS": f"localhost:{front.port}",
                "MISPERS_TEMPORAL_NAMESPACE": dev_env.client.namespace,
                "MISPERS_TEMPORAL_TLS_CA": str(ca_file),
            }
            good = load_settings(
                {
                    **base,
                    "MISPERS_TEMPORAL_TLS_CERT": str(client_cert),
                    "MISPERS_TEMPORAL_TLS_KEY": str(client_key),
                }
            )
            client = await connect(good)
            count = await client.count_workflows()
            assert count.count >= 0
            assert "mispers-worker" in front.accepted

            # Without a client certificate the front refuses the handshake.
            before = len(front.accepted)
            with pytest.raises(Exception):  # noqa: B017 - the SDK's connect error type varies
                await asyncio.wait_for(connect(load_settings(base)), timeout=20)
            assert len(front.accepted) == before

            # A client certificate from another CA is refused too.
            stranger_cert, stranger_key = (
                TestCA("other").issue("intruder", server=False).write(tmp_path, "intruder")
            )
            with pytest.raises(Exception):  # noqa: B017
                await asyncio.wait_for(
                    connect(
                        load_settings(
                            {
                                **base,
                                "MISPERS_TEMPORAL_TLS_CERT": str(stranger_cert),
                                "MISPERS_TEMPORAL_TLS_KEY": str(stranger_key),
                            }
                        )
                    ),
                    timeout=20,
                )
            assert "intruder" not in front.accepted
