"""The production broker configuration (deploy/mosquitto/docker.conf) with real certificates:
tags sign in over TLS and are refused in clear text or against another authority."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tests.services import ROOT, TORCH, Database, mqtt_client, service_env, wait_for

TLS_PORT, PLAIN_PORT = 18883, 18884


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def authority(where: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", "ca.key", "-out", "ca.crt", cwd=where)  # fmt: skip


@pytest.fixture
def tls_broker(db: Database) -> Iterator[dict[str, Path]]:
    state = Path(f"/tmp/torch-test-tls-{TLS_PORT}")  # the broker drops root: not in pytest's tmp
    shutil.rmtree(state, ignore_errors=True)
    certs, other = state / "certs", state / "other"
    for d in (certs, other):
        d.mkdir(parents=True)
    authority(certs, "TORCH test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=certs)  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
            cwd=certs)  # fmt: skip
    authority(other, "Someone else's CA")
    conf = (ROOT / "deploy/mosquitto/docker.conf").read_text()
    for old, new in (
        ("/mosquitto/data/", f"{state}/"),
        ("/mosquitto/auth/", f"{state}/"),
        ("/mosquitto/certs/", f"{certs}/"),
        ("listener 8883 0.0.0.0", f"listener {TLS_PORT} 127.0.0.1"),
        ("listener 1883 0.0.0.0", f"listener {PLAIN_PORT} 127.0.0.1"),
        ("log_dest stdout", f"log_dest file {state}/mosquitto.log"),
    ):
        assert old in conf, old
        conf = conf.replace(old, new)
    (state / "mosquitto.conf").write_text(conf)
    shutil.chown(state, "mosquitto")
    for f in [*state.rglob("*")]:
        shutil.chown(f, "mosquitto")
    env = service_env(TORCH_BROKER_DIR=str(state))
    out = subprocess.run([TORCH, "device", "add", "TLS-1"], env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    (state / "password").write_text(out.splitlines()[-1])
    broker = subprocess.Popen(["mosquitto", "-c", str(state / "mosquitto.conf")])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", TLS_PORT)) == 0

    wait_for(listening, timeout=10)
    yield {"state": state, "ca": certs / "ca.crt", "other": other / "ca.crt"}
    broker.terminate()
    broker.wait(10)
    shutil.rmtree(state, ignore_errors=True)


def attempt(port: int, password: str, ca: Path | None) -> str:
    """Sign in as TLS-1 and publish one fix; what happened, in a word or two."""
    client = mqtt_client(f"tls-{uuid.uuid4().hex[:6]}", "TLS-1", password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    answered = threading.Event()
    codes: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: (codes.append(rc), answered.set())
    try:
        client.connect("localhost", port, keepalive=5)
    except ssl.SSLCertVerificationError:
        return "certificate refused"
    client.loop_start()
    try:
        if not answered.wait(5):
            return "no answer"
        if codes[0].is_failure:
            return codes[0].getName()
        info = client.publish("tags/TLS-1/fixes", '{"ts": "2026-11-23T10:00:00Z"}', qos=1)
        info.wait_for_publish(5)
        return "published" if info.is_published() else "not published"
    finally:
        client.disconnect()
        client.loop_stop()


def test_tags_reach_the_broker_over_tls_only(tls_broker: dict[str, Path]) -> None:
    password = (tls_broker["state"] / "password").read_text()
    assert attempt(TLS_PORT, password, tls_broker["ca"]) == "published"
    assert attempt(TLS_PORT, "wrong", tls_broker["ca"]) == "Not authorized"
    assert attempt(TLS_PORT, password, tls_broker["other"]) == "certificate refused"
    assert attempt(TLS_PORT, password, None) == "no answer"  # clear text on the TLS port
