"""Where the action lists go: files under ``reports/actions/<as_of>/`` and database tables.

Files: ``at_risk``, ``expansion`` and ``audiences`` as CSV and Parquet, written together into a
folder that replaces the previous one for that as-of atomically (:mod:`churnlab.atomic`).

Databases: a DuckDB file (``--sink PATH.duckdb``) or any SQLAlchemy URL (``--sink URL``) gets
tables ``churnlab_at_risk``, ``churnlab_expansion`` and ``churnlab_audiences`` that a CRM can
sync from. Every row carries ``as_of``; writing an as-of deletes that as-of's rows and inserts the
new ones in one transaction, so a re-run replaces instead of duplicating and a failure leaves the
previous rows in place.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churnlab.atomic import atomic_dir
from churnlab.errors import ChurnlabError
from churnlab.sources import mask_password

TABLES = ("at_risk", "expansion", "audiences")
PREFIX = "churnlab_"


class SinkError(ChurnlabError):
    """The lists cannot be written where asked."""


def write_files(
    lists: dict[str, pd.DataFrame],
    out: Path | str,
    as_of: dt.datetime,
    *,
    extras: dict[str, pd.DataFrame] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write each list as CSV and Parquet under ``<out>/<as_of date>/`` (one atomic swap).

    Parameters
    ----------
    lists : dict of str to DataFrame
        The action lists.
    out : Path or str
        ``score.out``.
    as_of : datetime
        The scoring date (the folder's name).
    extras : dict of str to DataFrame, optional
        Supporting tables written as CSV (drift, drivers, audience summary: the report's input).
    meta : dict, optional
        Written as ``run.json`` (the scoring run id, the models, the budget).

    Returns
    -------
    Path
        The folder written.
    """
    folder = Path(out) / f"{as_of:%Y-%m-%d}"
    with atomic_dir(folder) as tmp:
        for name, frame in lists.items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        for name, frame in (extras or {}).items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
        if meta is not None:
            (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def _is_duckdb(target: str) -> bool:
    return target.endswith((".duckdb", ".ddb")) or target.startswith("duckdb:")


def write_database(lists: dict[str, pd.DataFrame], target: str, as_of: dt.datetime) -> str:
    """Replace this as-of's rows of the ``churnlab_*`` tables in ``target`` in one transaction.

    Parameters
    ----------
    lists : dict of str to DataFrame
        ``at_risk``, ``expansion``, ``audiences`` (each with an ``as_of`` column).
    target : str
        A ``.duckdb`` file path or a SQLAlchemy URL.
    as_of : datetime
        The as-of whose rows are replaced.

    Returns
    -------
    str
        The target, with any password masked (for messages).
    """
    try:
        if _is_duckdb(target):
            _write_duckdb(lists, target.removeprefix("duckdb:///").removeprefix("duckdb:"), as_of)
        else:
            _write_sql(lists, target, as_of)
    except SinkError:
        raise
    except Exception as err:  # any driver error: one line, no password
        raise SinkError(
            f"cannot write the lists to {mask_password(target)}: {str(err).splitlines()[0]}"
        ) from None
    return mask_password(target)


def _write_duckdb(lists: dict[str, pd.DataFrame], path: str, as_of: dt.datetime) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(path)
    try:
        con.execute("BEGIN TRANSACTION")
        for name, frame in lists.items():
            table = PREFIX + name
            con.register("_sink_df", frame)
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _sink_df LIMIT 0")
            con.execute(f"DELETE FROM {table} WHERE as_of = ?", [as_of])
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _sink_df")
            con.unregister("_sink_df")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _write_sql(lists: dict[str, pd.DataFrame], url: str, as_of: dt.datetime) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # one transaction: all tables or none
            existing = set(sa.inspect(conn).get_table_names())
            for name, frame in lists.items():
                table = PREFIX + name
                if table in existing:
                    conn.execute(sa.text(f"DELETE FROM {table} WHERE as_of = :a"), {"a": as_of})
                frame.to_sql(table, conn, index=False, if_exists="append")
    finally:
        engine.dispose()
