"""The feature spec engine: expanding the declared families, the window math against brute
force, exact money, the worker connection, lookbacks for the latest row, NULL semantics.

The family-level exact values are in test_features.py and the leakage tests in
tests/data/test_leakage.py; these tests pin the engine's own parts.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from churnlab import feature_buckets, feature_engine, features, load
from churnlab import feature_windows as fw
from churnlab.config import DatasetParams
from churnlab.feature_specs import Context, FeatureError, Planned, Source, Spec, expand
from churnlab.manifest import Feature

T = dt.datetime(2024, 4, 1)
DAY = dt.timedelta(days=1)
US = 86_400_000_000


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def context(**kw: object) -> Context:
    base: dict[str, object] = {
        "windows": (7, 30),
        "tables": frozenset({"events"}),
        "has_values": frozenset({"events.user_id"}),
        "event_types": ("a b", "a-b"),
        "slugs": {"a b": "a_b", "a-b": "a_b_"},
        "categories": {},
    }
    return Context(**(base | kw))  # type: ignore[arg-type]


def test_engagement_specs_expand_in_declared_order_with_their_fields():
    planned = expand(context())
    names = [p.feature.name for p in planned]
    assert names == [
        "events_7d", "events_a_b_7d", "events_a_b__7d", "active_days_7d",
        "events_30d", "events_a_b_30d", "events_a_b__30d", "active_days_30d",
        "failed_payments_7d", "failed_payments_30d",
        "days_since_last_event",
        "active_users_7d", "active_users_30d",
        "event_types_7d", "event_types_30d",
        "events_trend_7d", "events_a_b_trend_7d", "events_a_b__trend_7d",
        "events_per_active_user_7d", "events_per_active_user_30d",
    ]  # fmt: skip
    by = {p.feature.name: p for p in planned}
    f = by["events_a_b__30d"].feature
    assert (f.event_type, f.measure, f.window, f.table, f.family) == (
        "a-b", "events", 30, "events", "engagement"
    )  # fmt: skip
    assert f.fill_zero and by["events_a_b__30d"].where == "event_type = 'a-b'"
    assert by["failed_payments_7d"].feature.group == "commercial"
    trend = by["events_a_b_trend_7d"].feature
    assert (trend.kind, trend.measure, trend.window, trend.event_type) == (
        "trend", "events_trend", 7, "a b"
    )  # fmt: skip
    assert trend.expr == (
        "CASE WHEN events_a_b_30d - events_a_b_7d > 0 THEN (events_a_b_7d / 7) / "
        "((events_a_b_30d - events_a_b_7d) / 23) - 1 END"
    )
    assert by["event_types_30d"].feature.expr == (
        "(events_a_b_30d > 0)::INTEGER + (events_a_b__30d > 0)::INTEGER"
    )
    assert by["days_since_last_event"].feature.window is None


def test_specs_need_their_table_and_columns():
    # no user ids: no active users and nothing derived from them; no quantity: no quantity
    names = {p.feature.name for p in expand(context(has_values=frozenset()))}
    assert not {n for n in names if "active_users" in n or "per_active_user" in n}
    assert "event_quantity_7d" not in names and "quantity_per_event_7d" not in names
    with_qty = {p.feature.name for p in expand(context(has_values=frozenset({"events.quantity"})))}
    assert {"event_quantity_30d", "quantity_per_event_30d"} <= with_qty
    # seat utilisation needs seats, which needs subscriptions
    full = context(
        tables=frozenset({"events", "subscriptions"}),
        has_values=frozenset({"events.user_id", "subscriptions.seats"}),
    )
    names = {p.feature.name for p in expand(full)}
    assert {"seat_utilisation_7d", "seats", "mrr_current"} <= names
    assert "seat_utilisation_7d" not in {p.feature.name for p in expand(context())}
    assert not expand(context(tables=frozenset()))


def test_types_whose_names_collide_get_their_own_columns():
    frames = {
        "accounts": pd.DataFrame({"account_id": ["x"], "created_at": ts("2024-01-01")}),
        "events": pd.DataFrame(
            {
                "account_id": ["x", "x", "x"],
                "occurred_at": ts("2024-03-30", "2024-03-31", "2024-03-31 12:00"),
                "event_type": ["a b", "a-b", "a-b"],
                "quantity": [1.0, 2.0, 3.0],
                "user_id": ["u", "u", "v"],
            }
        ),
    }
    con = load.connect_frames(frames)
    spine = pd.DataFrame({"account_id": ["x"], "cutoff": pd.Series([T], dtype="datetime64[us]")})
    frame, feats = features.compute(con, spine, DatasetParams(windows=(7, 30)))
    row = frame.iloc[0]
    assert (row["events_a_b_7d"], row["events_a_b__7d"], row["active_users_7d"]) == (1, 2, 2)
    assert {f.event_type for f in feats if f.name.startswith("events_a_b")} == {"a b", "a-b"}


# --------------------------------------------------------------------------------------------
# Window math against brute force
# --------------------------------------------------------------------------------------------


def random_grid_and_rows(seed: int, n_rows: int, *, big: bool = False):
    rng = np.random.default_rng(seed)
    cutoffs = tuple(sorted({T + dt.timedelta(days=int(d)) for d in rng.integers(0, 200, 5)}))
    accounts = 7
    spine = [(a, k) for a in range(accounts) for k in range(len(cutoffs)) if rng.random() < 0.8]
    acc = np.array([a for a, _ in spine], dtype=np.int32)
    cut = np.array([k for _, k in spine], dtype=np.int32)
    grid = fw.make_grid(acc, cut, cutoffs, (7, 30, 90))
    start_us = int((grid.start - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))
    span = (cutoffs[-1] - grid.start).days + 120
    time = start_us - 100 * US + rng.integers(0, span * US, n_rows)
    day = np.maximum((time - start_us) // US, -1).astype(np.int16)
    bits = rng.integers(0, 8, n_rows)  # three filters
    cls, combos = fw.dense_classes(bits, 3)
    scale = 10**14 if big else 10**6
    values = {"m": rng.integers(-scale, scale, n_rows).astype(np.int64)}
    end_us = start_us + grid.ndays * US
    keep = time < end_us  # the projection reads rows before the last cutoff
    rows = fw.Rows(acc=rng.integers(0, accounts, n_rows).astype(np.int32)[keep], day=day[keep],
                   cls=cls[keep], combos=combos, values={"m": values["m"][keep]},
                   time=time[keep])  # fmt: skip
    return grid, rows, bits[keep], start_us


def brute(case, bit, window, what):
    """Per spine row, by looping: count, sum of m, latest time, or distinct days."""
    grid, rows, bits, start_us = case
    out = []
    for r in range(grid.n):
        c_us = start_us + int(grid.cutoff_day()[r]) * US
        lo = -(10**30) if window is None else c_us - window * US
        sel = (rows.acc == grid.acc[r]) & (rows.time < c_us) & (rows.time >= lo)
        sel &= (bits & (1 << bit)) != 0 if bit is not None else True
        if what == "count":
            out.append(int(sel.sum()))
        elif what == "sum":
            out.append(int(rows.values["m"][sel].sum()))
        elif what == "latest":
            out.append(int(rows.time[sel].max()) if sel.any() else -1)
        else:
            out.append(len(set(((rows.time[sel] - start_us) // US).tolist())))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sorted_runs_equal_brute_force(seed):
    case = random_grid_and_rows(seed, 3000)
    grid, rows, _, _ = case
    measures = {"c0": (0, None), "c2": (2, None), "all": (None, None), "sum": (None, "m")}
    runs = fw.sort_runs(grid, rows, measures)
    for window in (7, 30, 90, None):
        for name, bit in (("c0", 0), ("c2", 2), ("all", None)):
            got = fw.runs_window(grid, runs, name, window)
            np.testing.assert_array_equal(got, brute(case, bit, window, "count"))
        got = fw.runs_window(grid, runs, "sum", window)
        np.testing.assert_array_equal(got, brute(case, None, window, "sum"))
    match = rows.class_mask(1)[runs.cls]
    row = fw.runs_latest(grid, runs, match)
    got = np.where(row >= 0, rows.time[np.maximum(row, 0)], -1)
    np.testing.assert_array_equal(got, brute(case, 1, None, "latest"))


@pytest.mark.parametrize(("seed", "big"), [(0, False), (1, True), (2, True)])
def test_dense_grids_equal_brute_force(seed, big):
    """Segment sums, day presence and the latest time, including sums split in two parts."""
    case = random_grid_and_rows(seed, 4000, big=big)
    grid, rows, _, _ = case
    measures = {"c1": (1, None), "all": (None, None), "sum": (None, "m")}
    sums = fw.segment_sums(grid, rows, measures)
    assert bool(sums.sums["sum"][1:]) == big  # large integers take the split path
    for window in (7, 30, 90, None):
        got = fw.window_sums(grid, sums, window)
        np.testing.assert_array_equal(got["c1"], brute(case, 1, window, "count"))
        np.testing.assert_array_equal(got["all"], brute(case, None, window, "count"))
        np.testing.assert_array_equal(got["sum"], brute(case, None, window, "sum"))
    cells = fw.day_cells(grid, rows)
    mask = rows.rows_with(0)
    cum = fw.active_day_counts(grid, cells, mask)
    for window in (7, 30, 90):
        got = fw.active_days(grid, cum, window)
        np.testing.assert_array_equal(got, brute(case, 0, window, "days"))
    latest = fw.latest_by_day(grid, rows, cells, mask, cum)
    older = fw.older_times(grid, rows, mask)
    got = np.where(latest < 0, older[grid.acc], latest)
    np.testing.assert_array_equal(got, brute(case, 0, None, "latest"))


# --------------------------------------------------------------------------------------------
# Exact money, the worker connection, lookbacks, NULL semantics
# --------------------------------------------------------------------------------------------


def test_micro_unit_sums_convert_to_the_doubles_duckdb_gives_decimal_sums():
    rng = np.random.default_rng(5)
    n = 20_000
    amounts = np.round(rng.uniform(-5e3, 5e4, n), 2)
    amounts[:300] = np.round(rng.uniform(1e10, 9e10, 300), 6)  # sums past 2**50 micro-units
    groups = rng.integers(0, 500, n)
    groups[:300] = rng.integers(0, 20, 300)
    con = duckdb.connect()
    con.register("t", pd.DataFrame({"g": groups, "a": amounts}))
    want = con.execute(
        "SELECT g, CAST(sum(CAST(a AS DECIMAL(38, 6))) AS DOUBLE) AS s FROM t GROUP BY g ORDER BY g"
    ).fetchnumpy()
    micro = con.execute(
        "SELECT g, CAST(CAST(a AS DECIMAL(38, 6)) * 1000000 AS BIGINT) AS m FROM t"
    ).fetchnumpy()
    sums = np.zeros(500, dtype=np.int64)
    np.add.at(sums, micro["g"], micro["m"])
    assert (np.abs(sums) >= feature_buckets.MICRO_EXACT).sum() > 5
    got = feature_engine.drive(con, feature_buckets.micro_to_double(sums[want["g"]]))
    np.testing.assert_array_equal(got, want["s"])  # bit for bit


def test_an_amount_beyond_the_exact_range_is_a_clear_error():
    frames = {
        "accounts": pd.DataFrame({"account_id": ["x"], "created_at": ts("2024-01-01")}),
        "orders": pd.DataFrame(
            {
                "account_id": ["x"],
                "ordered_at": ts("2024-03-30"),
                "amount": [2e13],
                "kind": ["new"],
                "product": ["p"],
            }
        ),
    }
    con = load.connect_frames(frames)
    spine = pd.DataFrame({"account_id": ["x"], "cutoff": pd.Series([T], dtype="datetime64[us]")})
    with pytest.raises(FeatureError, match="amount in orders is beyond nine trillion"):
        features.compute(con, spine, DatasetParams(windows=(7, 30)))


def small_world(tmp_path):
    from churnlab import synth
    from churnlab.config import DataParams, SynthParams
    from churnlab.load import typed_views
    from churnlab.sources import open_source

    synth.run(SynthParams(accounts=150, months=14, seed=3), out=str(tmp_path / "w"))
    data = DataParams(source=str(tmp_path / "w"))
    con = open_source(data)
    typed_views(con, data)
    return con


def test_the_worker_connection_changes_nothing(tmp_path, monkeypatch):
    con = small_world(tmp_path)
    ids = [r[0] for r in con.execute("SELECT account_id FROM accounts ORDER BY 1").fetchall()]
    cutoffs = pd.date_range("2024-06-01", "2024-12-01", freq="MS")
    spine = pd.DataFrame([(a, c) for a in ids for c in cutoffs], columns=["account_id", "cutoff"])
    spine["cutoff"] = spine["cutoff"].astype("datetime64[us]")
    params = DatasetParams(windows=(7, 30, 90))
    monkeypatch.setattr(features, "BACKGROUND", True)
    both, feats = features.compute(con, spine, params)
    monkeypatch.setattr(features, "BACKGROUND", False)
    alone, feats_alone = features.compute(con, spine, params)
    pd.testing.assert_frame_equal(both, alone, check_exact=True)
    assert feats == feats_alone
    assert both["events_90d"].sum() > 0 and both["active_users_90d"].sum() > 0


def test_latest_rows_long_before_the_windows_are_found():
    """Rows 100 and 400 days before the first window start: the lookback reaches both."""
    frames = {
        "accounts": pd.DataFrame(
            {"account_id": ["a", "b", "c", "d"], "created_at": ts(*["2020-01-01"] * 4)}
        ),
        "events": pd.DataFrame(
            {
                "account_id": ["a", "b", "c", "c"],
                # windows (7, 30): the first window starts at T - 30 days = 2024-03-02
                "occurred_at": ts(
                    "2024-03-20 06:00", "2023-11-23 12:00", "2023-01-27 18:00", "2022-01-01"
                ),
                "event_type": ["login"] * 4,
                "quantity": [1.0] * 4,
                "user_id": ["u"] * 4,
            }
        ),
    }
    con = load.connect_frames(frames)
    spine = pd.DataFrame(
        {"account_id": ["a", "b", "c", "d"], "cutoff": pd.Series([T] * 4, dtype="datetime64[us]")}
    )
    frame, _ = features.compute(con, spine, DatasetParams(windows=(7, 30)))
    got = frame.set_index("account_id")["days_since_last_event"]
    assert got["a"] == 12 - 0.25
    assert got["b"] == (T - dt.datetime(2023, 11, 23, 12)) / DAY
    assert got["c"] == (T - dt.datetime(2023, 1, 27, 18)) / DAY
    assert np.isnan(got["d"])


def test_derived_features_see_missing_inputs_as_null_not_nan():
    """DuckDB orders NaN above every number: NaN > 0 would be true, NULL > 0 is not."""
    grid = fw.make_grid(np.array([0, 1, 2], np.int32), np.zeros(3, np.int32), (T,), (7,))
    run = feature_engine.Run(
        duckdb.connect(), grid, {}, np.empty((3, 2), order="F"), {"x": 0, "y": 1}
    )
    run.put("x", np.array([1.0, np.nan, -1.0]))
    expr = "CASE WHEN x > 0 THEN 1 ELSE 0 END"
    spec = Spec("y", "y", "engagement", "derived", "events", value=expr)
    feature = Feature("y", "y", "engagement", expr=expr)
    planned = Planned(feature, spec, Source("events", "events", "occurred_at"), None, None, expr)
    feature_engine.derived(run, [planned])
    np.testing.assert_array_equal(run.column("y"), [1.0, 0.0, 0.0])


def test_small_tables_through_the_dense_path_give_the_same_frame(tmp_path, monkeypatch):
    """With no table counted as small, orders, tickets and campaigns (lifetime totals, latest
    rows before the windows) go through the dense grids; subscription steps keep the sorted
    runs their latest values need."""
    con = small_world(tmp_path)
    ids = [r[0] for r in con.execute("SELECT account_id FROM accounts ORDER BY 1").fetchall()]
    cutoffs = pd.date_range("2024-03-01", "2024-12-01", freq="MS")
    spine = pd.DataFrame([(a, c) for a in ids for c in cutoffs], columns=["account_id", "cutoff"])
    spine["cutoff"] = spine["cutoff"].astype("datetime64[us]")
    params = DatasetParams(windows=(7, 30, 90))
    sorted_runs, _ = features.compute(con, spine, params)
    monkeypatch.setattr(fw, "SORT_ROWS", 0)
    dense, _ = features.compute(con, spine, params)
    pd.testing.assert_frame_equal(sorted_runs, dense, check_exact=True)
    assert dense["orders_lifetime"].sum() > 0 and dense["days_since_last_order"].notna().any()
