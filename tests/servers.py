"""Real servers for the remote-storage tests, started by the tests themselves: an S3-protocol
server (moto's, the `moto[server]` package) and PostgreSQL (Debian's `postgresql`), each on
127.0.0.1 at a free port, each stopped by its own process id.

PostgreSQL refuses to run as root, so under root (CI, a fresh Debian machine) its data
directory is given to the `postgres` user the Debian package creates (else `nobody`) and the
server runs as that user through `setpriv`, which execs in place: the pid we hold is the
server's own. As a normal user it simply runs as that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s: {_tail(log)}")


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class S3Server:
    """moto's S3 server in its own process; `env` holds what a client needs to reach it."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="curate-s3-")
        self.port = free_port()
        self.log = os.path.join(self.root, "moto.log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_port(self.port, self.proc, "moto S3 server", self.log)
        except Exception:
            self.stop()
            raise
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "curate-test",
                    "AWS_SECRET_ACCESS_KEY": "curate-test-secret", "AWS_REGION": "us-east-1"}

    def bucket(self) -> str:
        """A new empty bucket (one per test keeps tests apart)."""
        import boto3
        name = f"b-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="curate-test",
                     aws_secret_access_key="curate-test-secret").create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_bindir() -> str | None:
    """The directory holding `initdb` and `postgres`: PATH first, then Debian's versioned dirs."""
    found = shutil.which("initdb")
    if found:
        d = os.path.dirname(os.path.realpath(found))
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]) if
                  d.split("/")[-2].isdigit() else 0)
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "postgres")):
            return d
    return None


class Postgres:
    """A throwaway PostgreSQL cluster: trust auth, 127.0.0.1 only, unix socket in its own dir."""

    def __init__(self, bindir: str) -> None:
        self.root = tempfile.mkdtemp(prefix="curate-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "postgres.log")
        self.port = free_port()
        prefix: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run as an unprivileged user
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        init = subprocess.run(prefix + [os.path.join(bindir, "initdb"), "-D", self.data, "-U", "curate",
                                        "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                              cwd=self.root, env=env, capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                prefix + [os.path.join(bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                          "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                          "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_port(self.port, self.proc, "postgres", self.log)
            self._ready()
        except Exception:
            self.stop()
            raise

    def _ready(self, timeout: float = 60) -> None:
        import psycopg
        deadline = time.time() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres", driver=False), connect_timeout=2):
                    return
            except psycopg.OperationalError:  # listening, still starting up
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def url(self, db: str, driver: bool = True) -> str:
        scheme = "postgresql+psycopg" if driver else "postgresql"
        return f"{scheme}://curate@127.0.0.1:{self.port}/{db}"

    def database(self) -> str:
        """A new empty database; its SQLAlchemy URL (one per test keeps catalogs apart)."""
        import psycopg
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres", driver=False), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # fast shutdown: aborts clients, then exits
        shutil.rmtree(self.root, ignore_errors=True)
