"""A private coturn for tests: started on loopback with a generated config
(never the system service), stopped at the end.  `make coturn` installs
Debian's package; without it these tests are skipped."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from aioice import stun

REALM = "pysfu.test"
SECRET = "coturn-test-secret-" + "z" * 16


class Coturn:
    def __init__(self, proc: subprocess.Popen, port: int, tls_port: int, log: Path, cert: Path | None) -> None:
        self.proc = proc
        self.port = port
        self.tls_port = tls_port
        self.log = log
        self.address = ("127.0.0.1", port)
        self.tls_address = ("127.0.0.1", tls_port)
        #: Self-signed certificate of the TLS listener (for turns:).
        self.cert = cert

    def url(self, transport: str = "udp") -> str:
        """``transport``: udp, tcp or tls (a turns: URL)."""
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def turnserver_path() -> str:
    path = shutil.which("turnserver") or "/usr/bin/turnserver"
    if not Path(path).exists():
        pytest.skip("coturn not found: `make coturn` installs it (apt-get install coturn)")
    return path


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (coturn listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def write_config(directory: Path, port: int, secret: str, tls_port: int = 0) -> Path:
    if tls_port:
        cert, key = self_signed_certificate(directory)
        tls = [f"tls-listening-port={tls_port}", f"cert={cert}", f"pkey={key}"]
    else:
        tls = ["no-tls"]
    settings = [
        "listening-ip=127.0.0.1", "relay-ip=127.0.0.1", f"listening-port={port}", *tls,
        "use-auth-secret", f"static-auth-secret={secret}", f"realm={REALM}",
        "allow-loopback-peers", "no-multicast-peers", "fingerprint",
        "no-cli", "no-dtls", "no-rfc5780", "no-software-attribute",
        f"log-file={directory / 'turn.log'}", "simple-log", "no-stdout-log",
        f"pidfile={directory / 'turnserver.pid'}", f"userdb={directory / 'turndb'}",
    ]
    path = directory / "turnserver.conf"
    path.write_text("\n".join(settings) + "\n")
    return path


def answers_binding(address: tuple[str, int]) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(bytes(request), address)
        try:
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@contextmanager
def coturn(directory: Path, secret: str = SECRET, tls: bool = False, timeout: float = 15) -> Iterator[Coturn]:
    """Run turnserver on 127.0.0.1 until the block ends (``tls``: a turns:
    listener too, with a self-signed certificate)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_udp_tcp_port()
    tls_port = free_udp_tcp_port() if tls else 0
    config = write_config(directory, port, secret, tls_port)
    proc = subprocess.Popen([turnserver_path(), "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cert = directory / "turn-cert.pem" if tls else None
    server = Coturn(proc, port, tls_port, directory / "turn.log", cert)
    try:
        deadline = time.monotonic() + timeout
        while not answers_binding(server.address):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coturn did not start on port {port}:\n{server.log_tail()}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
