"""TLS options: client certificates (mTLS) on NATS, Kafka and Redis, and Kafka's refusal to send a
password in the clear unless told to.

No TLS broker runs here: a loopback TLS server that requires a client certificate stands in for
one, to show that the context handed to the client presents the certificate and verifies the
server with the given CA.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest

from tidings.transports import from_url
from tidings.transports.kafka import KafkaOptions
from tidings.transports.nats import NatsOptions
from tidings.transports.redis import RedisOptions
from tidings.transports.redis.transport import connect


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 (``cert.pem``, ``key.pem``): the CA, the server's
    and the client's certificate at once."""
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return directory


async def handshake(pki: Path, client: ssl.SSLContext) -> None:
    """Complete a TLS handshake with a loopback server that requires a client certificate."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki / "cert.pem")
    server_context.load_cert_chain(pki / "cert.pem", pki / "key.pem")
    server_context.verify_mode = ssl.CERT_REQUIRED
    peers: asyncio.Queue[object] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peers.put(writer.get_extra_info("peercert"))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        assert await peers.get(), "the server saw the client's certificate"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def files(pki: Path) -> str:
    return f"tls_ca={pki / 'cert.pem'}&tls_cert={pki / 'cert.pem'}&tls_key={pki / 'key.pem'}"


async def test_nats_presents_a_client_certificate(pki: Path) -> None:
    options = NatsOptions.from_url(f"nats://127.0.0.1:4222?{files(pki)}")
    context = options.tls_context()
    assert context is not None
    await handshake(pki, context)
    assert NatsOptions.from_url("nats://127.0.0.1:4222").tls_context() is None


async def test_kafka_presents_a_client_certificate(pki: Path) -> None:
    options = KafkaOptions.from_url(f"kafka://127.0.0.1:9092?{files(pki)}")
    settings = options.client_settings()
    assert settings["security_protocol"] == "SSL"
    await handshake(pki, settings["ssl_context"])


def test_redis_hands_the_certificate_files_to_its_client(pki: Path) -> None:
    options = RedisOptions.from_url(f"redis://127.0.0.1:6379/0?{files(pki)}")
    kwargs = connect(options).connection_pool.connection_kwargs
    assert kwargs["ssl_certfile"] == str(pki / "cert.pem")
    assert kwargs["ssl_keyfile"] == str(pki / "key.pem")
    assert kwargs["ssl_ca_certs"] == str(pki / "cert.pem")
    assert options.address.startswith("rediss://"), "a client certificate implies TLS"


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222?tls_key=/k.pem",
        "kafka://127.0.0.1:9092?tls_key=/k.pem",
        "redis://127.0.0.1:6379/0?tls_key=/k.pem",
    ],
)
def test_a_key_without_a_certificate_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="tls_key needs tls_cert"):
        from_url(url)


def test_a_missing_certificate_file_names_the_file(tmp_path: Path) -> None:
    options = NatsOptions.from_url(f"nats://127.0.0.1:4222?tls_cert={tmp_path / 'none.pem'}")
    with pytest.raises(ValueError, match=r"none\.pem"):
        options.tls_context()


def test_kafka_refuses_a_password_without_tls() -> None:
    with pytest.raises(ValueError, match="allow_plaintext_password") as refused:
        KafkaOptions.from_url("kafka://app:s3cret@127.0.0.1:9092")
    assert "s3cret" not in str(refused.value)


def test_kafka_sends_a_password_in_the_clear_only_when_told_to() -> None:
    options = KafkaOptions.from_url(
        "kafka://app:s3cret@127.0.0.1:9092?allow_plaintext_password=true"
    )
    assert options.client_settings()["security_protocol"] == "SASL_PLAINTEXT"
    with_tls = KafkaOptions.from_url("kafka://app:s3cret@127.0.0.1:9092?tls=true")
    assert with_tls.client_settings()["security_protocol"] == "SASL_SSL"
