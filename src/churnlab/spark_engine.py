"""The Spark engine's ground floor: the session, the contract tables, time and SQL.

Everything the Spark compilers (:mod:`churnlab.spark_features`, :mod:`churnlab.spark_dataset`)
share, written once for Spark:

- :func:`session`: a SparkSession from the ``spark`` params section, with the two settings the
  definitions rely on fixed (session time zone UTC; ANSI mode off, so that a NULL operand or a
  failed cast gives NULL as in DuckDB, not an error);
- :func:`read_tables`: the contract tables from ``<source>/<table>.parquet`` on any path Spark
  can read (local, ``hdfs://``, ``s3a://``, ``abfss://``), with the column mapping of
  ``data.columns`` / ``data.tables`` applied and every contract column cast to its contract type
  (timestamps as instants, rendered in UTC; NaN in a DOUBLE column is missing, as DuckDB's
  engine treats it);
- time as epoch microseconds (:func:`micros`, :func:`day_of`, :func:`days_between`): every
  comparison with a cutoff is an integer comparison, and a day is a UTC calendar day;
- :func:`translate`: a feature spec's SQL snippet in Spark SQL, with the constructs that differ
  between the engines rewritten or refused (see its docstring);
- :func:`day_map`: the (day, cutoff) pairs of per-cutoff day intervals, a small broadcast table
  that turns "rows in the window before each cutoff" into an equi-join.

pyspark is imported here and in the other ``spark_*`` modules only, and those are imported
lazily by the pipeline, so the embedded DuckDB path never needs pyspark or Java.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnlab.config import DataParams, SparkParams
from churnlab.coverage import end_is_inclusive, inclusive_note
from churnlab.errors import ChurnlabError
from churnlab.feature_specs import FeatureError
from churnlab.schema import REVENUE_TABLES, TABLES, Table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

US_PER_DAY = 86_400_000_000
EPOCH = dt.datetime(1970, 1, 1)
FIXED_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false"}
"""Settings the definitions rely on; :class:`churnlab.config.SparkParams` rejects others."""
DEFAULT_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
}
LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
"""For ``local[...]`` masters: the driver listens on the loopback interface only."""


class SparkEngineError(ChurnlabError):
    """The Spark engine cannot run with the installation, params or data given."""


class SparkUnsupported(FeatureError):
    """A declared feature uses something the Spark compiler does not (yet) compile."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(
            f"not supported on Spark yet: {what} ({where}); build this training set with "
            "dataset.engine: duckdb, or teach churnlab.spark_features the construct (and add it "
            "to the parity tests)"
        )


# --------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------


def session(params: SparkParams) -> SparkSession:
    """A SparkSession for the ``spark`` params section (an active one is reused).

    The settings the definitions rely on (:data:`FIXED_CONF`) are set on a reused session too.

    Parameters
    ----------
    params : SparkParams
        ``master``, ``app_name`` and ``conf``.

    Raises
    ------
    SparkEngineError
        When pyspark or a Java runtime is missing.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkEngineError(
            "dataset.engine is spark but pyspark is not installed: pip install 'churnlab[spark]' "
            "(pyspark 4 needs a Java 17+ runtime), or set dataset.engine: duckdb in params.yaml"
        ) from None
    java = java_version()
    if java is None:
        raise SparkEngineError(
            "dataset.engine is spark but no Java runtime was found (java is not on PATH and "
            "JAVA_HOME is not set): install Java 17+, e.g. apt-get install "
            "openjdk-17-jre-headless, or set dataset.engine: duckdb in params.yaml"
        )
    if java < 17:
        raise SparkEngineError(
            f"dataset.engine is spark but the Java runtime is version {java}; pyspark 4 needs "
            "Java 17+: install it (e.g. apt-get install openjdk-17-jre-headless) and put it on "
            "PATH or in JAVA_HOME"
        )
    conf = dict(DEFAULT_CONF)
    if params.master.startswith("local"):
        conf |= LOCAL_CONF
        # Python UDFs (scoring) run in worker processes: on one machine, this interpreter (its
        # pandas and churnlab), not whatever `python3` is first on PATH; a cluster sets its own.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf |= {k: _conf_value(v) for k, v in params.conf.items()} | FIXED_CONF
    builder = SparkSession.builder.master(params.master).appName(params.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for key, value in FIXED_CONF.items():  # an existing session keeps its own settings otherwise
        spark.conf.set(key, value)
    return spark


@contextlib.contextmanager
def session_scope(params: SparkParams) -> Iterator[SparkSession]:
    """A session for one command: started here and stopped after, unless one was running.

    A session that was active before (a notebook's, the tests') is reused and left running.
    """
    before = _active_session()
    spark = session(params)
    try:
        yield spark
    finally:
        if before is None:
            spark.stop()


def _active_session() -> SparkSession | None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None  # session() says how to install it
    return SparkSession.getActiveSession()


def java_version() -> int | None:
    """The major version of the Java runtime Spark would start (JAVA_HOME first), or None."""
    import os
    import subprocess

    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).exists():
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _conf_value(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@contextlib.contextmanager
def spark_errors() -> Iterator[None]:
    """Turn a data problem a Spark job reports (``raise_error('churnlab: ...')``) into one line."""
    try:
        yield
    except Exception as err:  # py4j and pyspark wrap the job's error in their own classes
        text = str(err)
        if "churnlab: " in text:
            raise FeatureError(text.split("churnlab: ", 1)[1].splitlines()[0]) from None
        raise


# --------------------------------------------------------------------------------------------
# Contract tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkTables:
    """The typed contract tables of a source, as Spark DataFrames (contract names and types)."""

    source: str
    frames: dict[str, DataFrame]
    notes: tuple[str, ...] = ()
    """What reading did that the user should know (inclusive end dates, as on DuckDB)."""

    @property
    def names(self) -> list[str]:
        """Contract tables present, in contract order."""
        return [t for t in TABLES if t in self.frames]

    def last_rows(self) -> dict[str, dt.datetime | None]:
        """Each table's last timestamp (its time column), None for an empty table."""
        from pyspark.sql import functions as F

        aggs = []
        for name in self.names:
            time = TABLES[name].time_column
            aggs.append(self.frames[name].agg(F.max(micros(F.col(str(time)))).alias(name)))
        row = one_row(aggs)
        return {
            name: None if row[name] is None else from_micros(int(row[name]))
            for name in self.names
        }


def one_row(aggregates: Sequence[DataFrame]) -> dict[str, Any]:
    """The values of several one-row aggregates (over different tables) in one Spark job.

    Each collect is a job with its fixed cost; cross-joined, the one-row results come back
    together.
    """
    if not aggregates:
        return {}
    frame = aggregates[0]
    for other in aggregates[1:]:
        frame = frame.crossJoin(other)
    return frame.collect()[0].asDict()


def read_tables(spark: SparkSession, data: DataParams, source: str) -> SparkTables:
    """The contract tables of ``source``: ``<source>/<table>.parquet`` (a file or a folder).

    Column mapping (``data.columns``) and table names (``data.tables``) apply as for the DuckDB
    loader; every contract column is cast to its contract type and extra account columns are
    kept (timestamps among them as UTC instants). Only the contract's shape is checked here
    (required tables and columns): the full validation is ``churnlab validate`` (DuckDB).

    Parameters
    ----------
    spark : SparkSession
        The session (:func:`session`).
    data : DataParams
        The ``data`` section (mapping of tables and columns).
    source : str
        A folder or URL prefix Spark can read (``/data/crm``, ``s3a://bucket/crm``).

    Raises
    ------
    SparkEngineError
        Listing every missing required table or column, or a CSV file where Parquet is needed.
    """
    _check_source(source)
    problems: list[str] = []
    frames: dict[str, DataFrame] = {}
    base = source.rstrip("/")
    for name, table in TABLES.items():
        user = data.tables.get(name, name)
        raw = _read_parquet(spark, f"{base}/{user}.parquet")
        if raw is None:
            local = Path(base.removeprefix("file://"))
            if (local / f"{user}.csv").exists():
                problems.append(
                    f"{name}: {local / (user + '.csv')} is CSV; the Spark engine reads Parquet "
                    "(convert it, e.g. with DuckDB: COPY (FROM 'x.csv') TO 'x.parquet')"
                )
            continue
        frames[name] = _typed(raw, table, data, problems)
    if "accounts" not in frames:
        problems.append(f"accounts: no {base}/{data.tables.get('accounts', 'accounts')}.parquet")
    if not any(t in frames for t in REVENUE_TABLES):
        problems.append(
            f"no {' or '.join(f'{t}.parquet' for t in REVENUE_TABLES)} in {base}: one of them "
            "is required"
        )
    if problems:
        raise SparkEngineError(
            f"cannot read the data contract from {source}: " + "; ".join(problems)
        )
    notes: list[str] = []
    if "subscriptions" in frames:
        frames["subscriptions"], notes = _subscription_end(frames["subscriptions"], data)
    return SparkTables(source, frames, tuple(notes))


def _subscription_end(subs: DataFrame, data: DataParams) -> tuple[DataFrame, list[str]]:
    """Inclusive end dates read as exclusive ends (:func:`churnlab.load.typed_views` on DuckDB)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("account_id").orderBy("start_at", "end_at")
    nxt = subs.select("end_at", F.lead("start_at").over(w).alias("nxt")).where(
        F.col("nxt").isNotNull() & F.col("end_at").isNotNull()
    )
    row = nxt.agg(
        F.count(F.lit(1)).alias("pairs"),
        F.sum((F.col("nxt") == F.col("end_at") + F.expr("INTERVAL 1 DAY")).cast("int")).alias("d"),
        F.sum((F.col("nxt") == F.col("end_at")).cast("int")).alias("t"),
    ).collect()[0]
    pairs, one_day, touching = int(row["pairs"]), int(row["d"] or 0), int(row["t"] or 0)
    if not end_is_inclusive(data.subscription_end, pairs, one_day, touching):
        return subs, []
    shifted = subs.withColumn("end_at", F.col("end_at") + F.expr("INTERVAL 1 DAY"))
    return shifted, [inclusive_note(data.subscription_end, pairs, one_day)]


_DATABASES = re.compile(
    r"^(postgres\w*|mysql|mariadb|sqlite|mssql|oracle|snowflake|redshift|bigquery|duckdb|"
    r"[a-z0-9]+\+[a-z0-9]+)://",
    re.IGNORECASE,
)


def _check_source(source: str) -> None:
    """Refuse sources the Spark engine does not read (databases), and missing local folders."""
    local = None if re.match(r"^[A-Za-z][\w+.-]*://", source) else Path(source)
    if source.startswith("file://"):
        local = Path(source.removeprefix("file://"))
    if _DATABASES.match(source) or (local is not None and local.is_file()):
        raise SparkEngineError(
            f"dataset.engine is spark but the data source {source} is a database: the Spark "
            "engine reads a folder of <table>.parquet files (local, hdfs://, s3a://, ...). "
            "Export the contract tables to Parquet, or set dataset.engine: duckdb"
        )
    if local is not None and not local.is_dir():
        raise SparkEngineError(
            f"data source {source} not found: give a folder of <table>.parquet files "
            "(data.source in params.yaml or --source)"
        )


def _read_parquet(spark: SparkSession, path: str) -> DataFrame | None:
    from pyspark.errors import AnalysisException

    try:
        return spark.read.parquet(path)
    except AnalysisException as err:
        if "PATH_NOT_FOUND" in str(err) or "Path does not exist" in str(err):
            return None
        raise SparkEngineError(f"cannot read {path}: {str(err).splitlines()[0]}") from None


_SPARK_TYPES = {
    "VARCHAR": "string",
    "TIMESTAMP": "timestamp",
    "DOUBLE": "double",
    "INTEGER": "int",
    "BOOLEAN": "boolean",
}


def _typed(raw: DataFrame, table: Table, data: DataParams, problems: list[str]) -> DataFrame:
    """Contract names and types (as :func:`churnlab.load.typed_views` makes them in DuckDB)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType

    cols: list[Column] = []
    mapped = set()
    for col in table.columns:
        src = data.columns.get(table.name, {}).get(col.name, col.name)
        mapped.add(src)
        if src in raw.columns:
            cols.append(_cast(raw[f"`{src}`"], col.dtype).alias(col.name))
        elif not col.required:
            cols.append(F.lit(None).cast(_SPARK_TYPES[col.dtype]).alias(col.name))
        else:
            where = f" (mapped to {src!r})" if src != col.name else ""
            problems.append(f"{table.name}: required column {col.name}{where} is missing")
    if table.extra_columns_allowed:
        for field in raw.schema.fields:
            if field.name in mapped or field.name in table.column_names:
                continue
            c = raw[f"`{field.name}`"]
            if isinstance(field.dataType, TimestampNTZType):
                c = c.cast("timestamp")
            cols.append(c.alias(field.name))
    return raw.select(*cols)


def _cast(c: Column, dtype: str) -> Column:
    from pyspark.sql import functions as F

    if dtype == "DOUBLE":
        d = c.cast("double")
        return F.when(F.isnan(d), F.lit(None).cast("double")).otherwise(d)
    if dtype == "INTEGER":  # via DOUBLE, so that text such as '3.0' converts like 3.0 does
        return c.cast("double").cast("int")
    return c.cast(_SPARK_TYPES[dtype])


# --------------------------------------------------------------------------------------------
# Time: epoch microseconds, UTC days
# --------------------------------------------------------------------------------------------


def micros(c: Column) -> Column:
    """A timestamp as epoch microseconds (an instant: independent of any time zone)."""
    from pyspark.sql import functions as F

    return F.unix_micros(c.cast("timestamp"))


def day_of(us: Column) -> Column:
    """The UTC calendar day (days since 1970-01-01, floored) of epoch microseconds.

    Exact integer arithmetic: DuckDB's ``date_diff('day', a, b)`` counts day boundaries
    crossed, Spark's ``datediff`` whole days elapsed; both are differences of these days.
    """
    from pyspark.sql import functions as F

    day = F.lit(US_PER_DAY)
    return ((us - F.pmod(us, day)) / day).cast("long")


def days_between(later_us: Column, earlier_us: Column) -> Column:
    """Days from ``earlier`` to ``later`` as a double: integer microseconds first, one division.

    The DuckDB engine computes the same (``CAST(epoch_us(a) - epoch_us(b) AS DOUBLE) / D``),
    so the two agree bit for bit.
    """
    return (later_us - earlier_us).cast("double") / float(US_PER_DAY)


def to_micros(t: dt.datetime) -> int:
    """A naive UTC datetime as epoch microseconds."""
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def from_micros(us: int) -> dt.datetime:
    """Epoch microseconds as a naive UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=us)


def day_map(spark: SparkSession, spans: Sequence[tuple[int, int, int]]) -> DataFrame:
    """The (day, cutoff) pairs of per-cutoff day intervals, for a broadcast equi-join.

    Parameters
    ----------
    spark : SparkSession
        The session.
    spans : sequence of (cutoff_us, first_day, end_day)
        Per cutoff (epoch microseconds), the days ``first_day <= d < end_day`` (epoch days).

    Returns
    -------
    DataFrame
        ``d`` (long), ``c`` (long, the cutoff) and ``lag`` (int, ``cutoff day - d``: 1 for the
        day before the cutoff), one row per pair; broadcast (it has days x cutoffs rows).
    """
    from pyspark.sql import functions as F

    rows: list[tuple[int, int, int]] = []
    for c, first, end in spans:
        cday = c // US_PER_DAY
        rows.extend((d, c, int(cday - d)) for d in range(first, end))
    frame = spark.createDataFrame(rows, "d long, c long, lag int")
    return F.broadcast(frame)


# --------------------------------------------------------------------------------------------
# SQL snippets of the specs
# --------------------------------------------------------------------------------------------

_REFUSED = (
    (r"\bdate_diff\b|\bdatediff\b|\bdate_sub\b|\bdate_add\b|\bage\s*\(", "date arithmetic"),
    (r"\bdate_trunc\b|\bstrftime\b|\bstrptime\b|\bextract\s*\(", "date functions"),
    (r"\bepoch\w*\b|\binterval\b", "interval or epoch arithmetic"),
    (r"\basof\b", "an ASOF join"),
    (r"\blist_\w+|\barray_\w+|\[", "list functions"),
    (r"\bfilter\s*\(\s*where\b", "a FILTER clause"),
    (r"//|\bdiv\b", "integer division"),
    (r"\border\s+by\b", "an ordered aggregate"),
    (r"\bregexp\w*\b|\bsimilar\s+to\b|\bglob\b", "regular expressions"),
    (r"\bgroup\s+by\b|\bover\s*\(", "grouping or window clauses"),
)
"""Constructs whose meaning differs between DuckDB and Spark SQL (or that have no common form):
a spec snippet using one is refused with :class:`SparkUnsupported`, never run as if it meant the
same."""

_DECIMAL_CAST = re.compile(
    r"CAST\(\s*([A-Za-z_]\w*)\s+AS\s+DECIMAL\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*\)", re.IGNORECASE
)


def translate(sql: str, schema: dict[str, DataType], where: str) -> str:
    """A spec's SQL snippet (DuckDB/Spark common subset) as Spark SQL with DuckDB's meaning.

    Rewritten:

    - ``CAST(x AS DECIMAL(p, s))`` of a floating-point column ``x``: DuckDB rounds ``x * 10^s``
      (a double) half away from zero, Spark the exact binary value half up, so inputs with more
      than ``s`` decimals at a tie differ by one unit in the last place (5 in 20,000 random
      amounts with 7-8 decimals). It becomes ``round(x * 10^s)`` (Spark rounds doubles half
      away from zero too) scaled back exactly in DECIMAL.
    - ``avg(e)``: DuckDB's average of a DECIMAL is a DOUBLE (the exact sum, then two
      divisions), Spark's a DECIMAL rounded to 4 more digits (``avg(1, 2, 2)`` is 1.6666666667):
      it becomes ``CAST(sum(e) AS DOUBLE) / count(e)``, which is DuckDB's value bit for bit.

    Refused (:data:`_REFUSED`): date arithmetic and functions, intervals, ASOF, list functions,
    FILTER clauses, integer division, ordered aggregates, regular expressions, grouping and
    window clauses. Left as they are (same meaning in both): comparisons, ``IN``, ``AND`` /
    ``OR`` / ``NOT``, ``coalesce``, ``abs``, ``greatest`` / ``least`` (both skip NULLs),
    ``CASE``, ``CAST(... AS DOUBLE / INTEGER / VARCHAR)`` and ``::INTEGER`` (Spark 4), ``+ - *``
    and ``/`` (a DOUBLE in both; **unguarded division is banned**: DuckDB gives inf or NaN for
    ``x / 0``, Spark NULL, so specs divide under ``CASE WHEN den > 0``, as
    :func:`churnlab.feature_specs.ratio` does).

    Parameters
    ----------
    sql : str
        The snippet.
    schema : dict
        Column name -> Spark type of the rows it is evaluated over.
    where : str
        Which spec it belongs to (for the error message).

    Raises
    ------
    SparkUnsupported
        For a refused construct.
    """
    bare = re.sub(r"'(?:[^']|'')*'", "''", sql)  # string literals may contain anything
    for pattern, what in _REFUSED:
        if re.search(pattern, bare, re.IGNORECASE):
            raise SparkUnsupported(f"{what} in SQL {sql!r}", where)

    def decimal(m: re.Match[str]) -> str:
        col, p, s = m.group(1), int(m.group(2)), int(m.group(3))
        typ = schema.get(col)
        if typ is None or typ.typeName() not in ("double", "float"):
            return m.group(0)
        scale = 10**s
        return (
            f"CAST(CAST(round({col} * {scale}D) AS DECIMAL(38, 0)) / {scale}BD "
            f"AS DECIMAL({p}, {s}))"
        )

    out = _DECIMAL_CAST.sub(decimal, sql)
    return _rewrite_calls(out, "avg", lambda e: f"(CAST(sum({e}) AS DOUBLE) / count({e}))")


def _rewrite_calls(sql: str, name: str, make: Any) -> str:
    """Replace every call ``name(args)`` (balanced parentheses) by ``make(args)``."""
    pattern = re.compile(rf"\b{name}\s*\(", re.IGNORECASE)
    out, pos = [], 0
    while True:
        m = pattern.search(sql, pos)
        if m is None:
            out.append(sql[pos:])
            return "".join(out)
        depth, i = 1, m.end()
        while depth and i < len(sql):
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            i += 1
        inner = _rewrite_calls(sql[m.end() : i - 1], name, make)
        out.append(sql[pos : m.start()] + make(inner))
        pos = i


MAX_AMOUNT = 9_000_000_000_000
"""As the DuckDB engine: amounts beyond nine trillion are an error, not a silent overflow."""


def exact_micros(
    frame: DataFrame, value: str, where: str, table: str, decimal: str = "38, 6"
) -> Column:
    """A value (SQL over ``frame``'s rows) as exact integer micro-units (a long).

    Cast to ``DECIMAL(decimal)`` first with DuckDB's rounding (:func:`translate`), as the
    DuckDB engine sums money; beyond nine trillion the job fails with a churnlab message.
    """
    from pyspark.sql import functions as F

    exact = F.expr(translate(f"CAST({value} AS DECIMAL({decimal}))", schema_of(frame), where))
    error = F.raise_error(
        F.lit(
            f"churnlab: an amount in {table} is beyond nine trillion; features sum amounts "
            "exactly in 64-bit micro-units (6 decimals): check the table for a misplaced unit "
            "or corrupt row"
        )
    )
    micro = (exact * F.lit(1_000_000)).cast("long")
    return F.when(F.abs(exact) >= F.lit(MAX_AMOUNT), error.cast("long")).otherwise(micro)


def schema_of(frame: DataFrame) -> dict[str, DataType]:
    """Column name -> Spark type."""
    return {f.name: f.dataType for f in frame.schema.fields}


# --------------------------------------------------------------------------------------------
# Running state: "as of" each cutoff without a range join
# --------------------------------------------------------------------------------------------


def running(
    rows: DataFrame,
    markers: DataFrame,
    order: str,
    aggs: dict[str, Column],
    *,
    strict: bool = True,
) -> DataFrame:
    """Aggregates over each account's rows up to each marker, in one sort per account.

    DuckDB's engine answers "the latest row before the cutoff" with an ASOF join, which Spark
    does not have; here the markers (one per spine row) are put among the rows in time order
    and the aggregates run over the rows before them (a window from the account's first row).

    Parameters
    ----------
    rows : DataFrame
        ``account_id``, the ``order`` column and what ``aggs`` read.
    markers : DataFrame
        ``account_id``, the ``order`` column (the marker's instant) and any columns to keep.
    order : str
        The time column (a long: epoch microseconds or days).
    aggs : dict
        Name -> aggregate over the rows (``sum``, ``max``, ``last(..., ignorenulls=True)``),
        evaluated as a running window; marker rows contribute NULLs, which they skip.
    strict : bool
        True: rows at a marker's very instant come after it (features: ``time < cutoff``);
        False: before it (state *at* an instant includes changes at it: ``time <= t``).

    Returns
    -------
    DataFrame
        The markers' columns and one column per aggregate.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    row_kind, marker_kind = (1, 0) if strict else (0, 1)
    both = rows.withColumn("_kind", F.lit(row_kind)).unionByName(
        markers.withColumn("_kind", F.lit(marker_kind)), allowMissingColumns=True
    )
    w = (
        Window.partitionBy("account_id")
        .orderBy(order, "_kind")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    keep = [c for c in markers.columns]
    out = both.select(*keep, "_kind", *[a.over(w).alias(n) for n, a in aggs.items()])
    return out.where(F.col("_kind") == marker_kind).drop("_kind")


def subscription_steps(subscriptions: DataFrame) -> DataFrame:
    """Each account's subscription timeline, as :func:`churnlab.timeline.subscription_steps`.

    One row per account and instant its state changes: ``account_id``, ``step_at``
    (timestamp), ``dm`` (MRR change, DECIMAL(38, 6)), ``mrr_after``, ``seats_after``,
    ``active_after``: the running totals of exact +/- deltas at every ``start_at`` and
    ``end_at``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    dm = F.expr(translate("CAST(mrr AS DECIMAL(38, 6))", schema_of(subscriptions), "timeline"))
    seats = F.coalesce(F.col("seats").cast("long"), F.lit(0).cast("long"))
    starts = subscriptions.select(
        "account_id", F.col("start_at").alias("step_at"), dm.alias("dm"), seats.alias("ds"),
        F.lit(1).cast("long").alias("dn"),
    )  # fmt: skip
    ends = subscriptions.where(F.col("end_at").isNotNull()).select(
        "account_id", F.col("end_at").alias("step_at"), (-dm).alias("dm"), (-seats).alias("ds"),
        F.lit(-1).cast("long").alias("dn"),
    )  # fmt: skip
    steps = (
        starts.unionByName(ends)
        .groupBy("account_id", "step_at")
        .agg(F.sum("dm").alias("dm"), F.sum("ds").alias("ds"), F.sum("dn").alias("dn"))
    )
    w = (
        Window.partitionBy("account_id")
        .orderBy("step_at")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return steps.select(
        "account_id",
        "step_at",
        "dm",
        F.sum("dm").over(w).alias("mrr_after"),
        F.sum("ds").over(w).alias("seats_after"),
        F.sum("dn").over(w).alias("active_after"),
    )
