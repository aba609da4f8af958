"""A PostgreSQL cluster of a test's own, which the test may restart or crash: restarting
the machine's shared server on port 5432 would break other tests running at the same
time (tests/test_follow_postgres_restart.py).

The cluster is made with the server binaries installed on the machine (``initdb``,
``pg_ctl``, on PATH or in ``pg_config --bindir``), in a temporary
folder, listening on a free loopback port with its unix socket in that folder, trust
authentication and ``wal_level = logical``. PostgreSQL refuses to run as root: under
root the binaries run as the ``postgres`` user (``runuser``), which owns the folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conn.testing.services import free_port

from tests.conftest import unavailable


def _bindir() -> Path:
    """The server binaries' folder: where ``initdb`` is on PATH, else ``pg_config
    --bindir`` (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        folder = Path(done.stdout.strip())
        if done.returncode == 0 and (folder / "initdb").exists():
            return folder
    unavailable("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    raise AssertionError("unreachable")


class PrivatePostgres:
    """One private cluster (see the module docstring); :attr:`url` reaches it."""

    def __init__(self) -> None:
        self.bin = _bindir()
        self.prefix: list[str] = []
        self.folder = Path(tempfile.mkdtemp(prefix="conn-pg-"))
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                unavailable("running as root without runuser: initdb refuses root")
            try:
                import pwd

                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no postgres user to run "
                            "initdb as (initdb refuses root)")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = self.folder / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*self.prefix, str(self.bin / tool), *args],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise AssertionError(f"{tool} {' '.join(args)} failed: {done.stdout}"
                                 f"{done.stderr}{self.server_log()}")

    def init(self) -> None:
        """initdb, then the settings a follower needs."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\n"
                       "wal_level = logical\nmax_wal_senders = 5\n"
                       "max_replication_slots = 5\nmax_connections = 20\n"
                       "shared_buffers = 16MB\n"
                       # A crash here is the server's (pg_ctl -m immediate), not the
                       # machine's: what a commit wrote is in the kernel's cache and
                       # survives it, so skipping fsync spares the shared disk.
                       "fsync = off\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown that ends every session; ``immediate``: a crash
        (the next start recovers from the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast", down: float = 1.0) -> None:
        """Stop in ``mode``, stay down ``down`` seconds (the follower's attempts fail),
        start again."""
        self.stop(mode)
        time.sleep(down)
        self.start()

    def server_log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def destroy(self) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
