"""Shared fixtures: a real PostgreSQL server, the bad-input corpus and a small valid dataset."""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

TESTS = Path(__file__).parent
BAD_INPUTS = TESTS / "data" / "bad_inputs"
PG_USER = "postgres"


def _pg_bindir() -> Path | None:
    found = [Path(p).parent.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not found:
        return None
    # Newest major version first (numeric, so 16 beats 9).
    best = max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)] or [0])
    return best / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 with an empty database; yields its URL.

    Uses initdb/pg_ctl from Debian's postgresql package (/usr/lib/postgresql/*/bin). PostgreSQL
    refuses to run as root, so under root the server runs as the ``postgres`` OS user (created
    by the Debian package) with a temporary data directory owned by it. The server is stopped
    and its directory deleted afterwards. Missing binaries fail the test (CI installs them): a
    silent skip would hide that the PostgreSQL path is untested.
    """
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install "
            "Debian's postgresql package (apt-get install postgresql); .ci/run does this"
        )
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="churnlab-pg-"))
    if as_root:
        try:
            account = pwd.getpwnam(PG_USER)
        except KeyError:
            shutil.rmtree(tmp)
            pytest.fail(
                f"running as root and there is no {PG_USER!r} OS user to run PostgreSQL as: "
                "install Debian's postgresql package (it creates the user)"
            )
        os.chown(tmp, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", PG_USER, "--"]
    datadir, log = tmp / "data", tmp / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            detail = log.read_text() if log.exists() else ""
            pytest.fail(f"{args[0]} failed: {proc.stderr.strip()}\n{detail}")

    started = False
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={tmp} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", options, "-w",
            "-t", "60", "start")  # fmt: skip
        started = True
        import sqlalchemy as sa

        admin = sa.create_engine(
            f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE churnlab_test"))
        admin.dispose()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/churnlab_test"
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w",
                 "stop"],
                capture_output=True,
                timeout=60,
            )  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def valid_csv_dir() -> Path:
    """A small valid dataset with all eight contract tables as CSV."""
    return BAD_INPUTS / "_valid"


@pytest.fixture
def contract_frames() -> dict[str, pd.DataFrame]:
    """All eight contract tables as small typed frames (the dtypes ``load.read_frames`` returns).

    Includes the awkward cases: nulls in every optional column, an open-ended subscription,
    a negative refund, microsecond timestamps, an extra integer and text account attribute.
    """
    ts = functools.partial(pd.to_datetime, format="ISO8601")

    def times(*values: str | None) -> pd.Series:
        return pd.Series(ts(list(values))).astype("datetime64[us]")

    def text(*values: str | None) -> pd.Series:
        return pd.Series(list(values), dtype="str")

    return {
        "accounts": pd.DataFrame(
            {
                "account_id": text("a1", "a2", "a3"),
                "created_at": times("2024-01-01", "2024-02-15 09:30:00", "2024-03-01 12:00:00"),
                "segment": text("smb", "mid", "ent"),
                "employees": pd.Series([10, 120, 900], dtype="int64"),
            }
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": text("a1", "a1", "a2", "a3"),
                "start_at": times("2024-01-01", "2024-02-01", "2024-02-15", "2024-03-01"),
                "end_at": times("2024-02-01", None, "2024-03-15", "2025-03-01"),
                "mrr": pd.Series([100.0, 110.5, 250.25, 900.0]),
                "plan": text("basic", "basic", None, "enterprise"),
                "seats": pd.array([5, 6, None, 40], dtype="Int32"),
            }
        ),
        "orders": pd.DataFrame(
            {
                "account_id": text("a1", "a2", "a2"),
                "ordered_at": times("2024-01-01", "2024-05-01", "2024-06-01 08:00:00"),
                "amount": pd.Series([1200.0, 300.0, -50.0]),
                "kind": text("new", "upsell", "refund"),
                "product": text("core", None, "addon"),
            }
        ),
        "events": pd.DataFrame(
            {
                "account_id": text("a1", "a2", "a3"),
                "occurred_at": times(
                    "2024-01-05 10:00:00.123456", "2024-02-20 11:00:00", "2024-03-02 12:00:00"
                ),
                "event_type": text("login", "report_run", "payment_failed"),
                "quantity": pd.Series([1.0, 3.0, None], dtype="float64"),
                "user_id": text("u1", "u2", None),
            }
        ),
        "campaign_events": pd.DataFrame(
            {
                "account_id": text("a1", "a1", "a2"),
                "occurred_at": times("2024-04-01", "2024-04-01 08:00:00", "2024-04-01"),
                "campaign_id": text("c1", "c1", "c1"),
                "action": text("sent", "open", "sent"),
                "campaign_type": text("newsletter", "newsletter", None),
            }
        ),
        "tickets": pd.DataFrame(
            {
                "account_id": text("a1", "a3"),
                "opened_at": times("2024-03-01", "2024-04-01"),
                "closed_at": times("2024-03-02 17:45:00", None),
                "priority": text("high", None),
                "csat": pd.Series([4.0, None], dtype="float64"),
            }
        ),
        "nps": pd.DataFrame(
            {
                "account_id": text("a1", "a2"),
                "responded_at": times("2024-06-30", "2024-06-30 23:59:59"),
                "score": pd.Series([9.0, 3.0]),
                "comment": text("great", None),
            }
        ),
        "treatments": pd.DataFrame(
            {
                "account_id": text("a1", "a2"),
                "campaign_id": text("c1", "c1"),
                "assigned_at": times("2024-04-01", "2024-04-01 09:00:00"),
                "holdout": pd.Series([False, True], dtype="bool"),
                "kind": text("retention", None),
                "channel": text("email", None),
                "cost": pd.Series([2.5, None], dtype="float64"),
            }
        ),
    }


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Apache Spark session for the test session (``local[2]`` on 127.0.0.1).

    No UI, two shuffle partitions (the tables are tiny); stopped at the end. pyspark or Java
    missing fails the test with the engine's own message (CI installs both): a silent skip
    would hide that the Spark engine is untested.
    """

    from churnlab import spark_engine
    from churnlab.config import SparkParams

    params = SparkParams(
        master="local[2]",
        app_name="churnlab-tests",
        conf={"spark.sql.shuffle.partitions": 2, "spark.ui.enabled": False,
              "spark.default.parallelism": 2},
    )  # fmt: skip
    try:
        session = spark_engine.session(params)
    except spark_engine.SparkEngineError as err:
        pytest.fail(str(err))
    try:
        yield session
    finally:
        session.stop()
