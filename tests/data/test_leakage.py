"""Point-in-time leakage tests by mutation (DESIGN.md section 2).

Features: change or delete every row at or after the cutoff, in every table, and the feature
frame is byte-for-byte identical. Labels: change rows before the cutoff and the labels are
identical. A row one microsecond before the cutoff counts for features; a row exactly at the
cutoff does not. Run on tiny literal tables and on hypothesis-generated ones.

"At or after the cutoff" is judged by each table's time column (subscriptions: start_at; a
subscription row is "before" the cutoff for the label tests when it ended by then).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnlab import features, labels, load
from churnlab.config import DatasetParams
from churnlab.schema import TABLES

T = dt.datetime(2024, 4, 1)
US = dt.timedelta(microseconds=1)
PARAMS = DatasetParams(windows=(7, 30, 90), horizon_days=30, lookback_days=60)
DATA_END = dt.datetime(2024, 8, 1)


def ts(*values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[us]")


def literal_tables() -> dict[str, pd.DataFrame]:
    """Every table with rows well before, 1 us before, exactly at and after the cutoff."""
    before, edge, at, after = (
        "2024-03-20 08:00",
        "2024-03-31 23:59:59.999999",
        "2024-04-01",
        ("2024-04-10 12:00"),
    )
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["a", "b", "c"],
                "created_at": ts("2023-06-01", edge, at),
                "segment": ["smb", "ent", "mid"],
                "employees": [10.0, 500.0, 50.0],
            }
        ),
        "subscriptions": pd.DataFrame(
            {
                "account_id": ["a", "a", "a", "b", "c", "c"],
                "start_at": ts("2023-06-01", "2024-03-01", at, edge, at, after),
                "end_at": ts(
                    "2024-03-01", "2024-04-01", None, "2024-06-01", "2024-04-10 12:00", None
                ),
                "mrr": [100.0, 120.0, 200.0, 300.0, 50.0, 80.0],
                "plan": ["basic", "plus", "pro", "ent", "basic", "plus"],
                "seats": pd.array([5, 6, 10, 20, 2, 3], dtype="Int32"),
            }
        ),
        # a: order days in every window (7 .. 365) and two orders on one day; b: orders older
        # than every window, one in 90 days, one at and one after the cutoff
        "orders": pd.DataFrame(
            [
                ("a", "2023-09-10 10:00", 40.0, "renewal"),
                ("a", "2023-12-05", 45.0, "renewal"),
                ("a", "2024-02-10", 30.0, "renewal"),
                ("a", before, 50.0, "new"),
                ("a", "2024-03-20 15:00", 5.0, "renewal"),
                ("a", "2024-03-25", -20.0, "refund"),
                ("a", edge, 70.0, "upsell"),
                ("a", "2024-04-20", 80.0, "renewal"),
                ("b", "2022-11-01", 500.0, "new"),
                ("b", "2024-02-01", 60.0, "renewal"),
                ("b", at, 90.0, "upsell"),
                ("b", after, 110.0, "refund"),
                ("c", "2024-05-01", 30.0, "cross_sell"),
            ],
            columns=["account_id", "ordered_at", "amount", "kind"],
        ).assign(ordered_at=lambda o: ts(*o["ordered_at"]), product="x"),
        "events": pd.DataFrame(
            {
                "account_id": ["a", "a", "a", "a", "b", "b", "c"],
                "occurred_at": ts(before, edge, at, after, edge, "2024-01-15", after),
                "event_type": [
                    "login",
                    "export",
                    "login",
                    "new_type",
                    "login",
                    "payment_failed",
                    "login",
                ],
                "quantity": [1.0] * 7,
                "user_id": ["u1", "u2", "u3", "u4", "v1", None, "w1"],
            }
        ),
        "campaign_events": pd.DataFrame(
            {
                "account_id": ["a", "a", "a", "b"],
                "occurred_at": ts(before, edge, at, after),
                "campaign_id": ["c1", "c1", "c2", "c2"],
                "action": ["sent", "click", "open", "click"],
                "campaign_type": ["nurture"] * 4,
            }
        ),
        "tickets": pd.DataFrame(
            {
                "account_id": ["a", "a", "b", "b"],
                "opened_at": ts(before, edge, at, after),
                "closed_at": ts("2024-03-25", "2024-04-05", "2024-04-02", None),
                "priority": ["high", "low", "urgent", "normal"],
                "csat": [4.0, 2.0, 1.0, None],
            }
        ),
        "nps": pd.DataFrame(
            {
                "account_id": ["a", "a", "a", "b"],
                "responded_at": ts("2024-01-01", edge, at, after),
                "score": [9.0, 6.0, 10.0, 0.0],
                "comment": [None, "ok", "great", "bad"],
            }
        ),
    }


def spine_for(frames: dict[str, pd.DataFrame], cutoff: dt.datetime = T) -> pd.DataFrame:
    """Every account id of any table, at one cutoff.

    The tests compute it once from the unmutated tables and keep it fixed: mutations must change
    nothing for the same (account, cutoff) rows.
    """
    ids = sorted(set().union(*(f["account_id"] for f in frames.values())))
    return pd.DataFrame(
        {"account_id": ids, "cutoff": pd.Series([cutoff] * len(ids), dtype="datetime64[us]")}
    )


def feature_frame(frames: dict[str, pd.DataFrame], spine: pd.DataFrame | None = None):
    con = load.connect_frames(frames)
    frame, _ = features.compute(con, spine_for(frames) if spine is None else spine, PARAMS)
    return frame


def label_frame(frames: dict[str, pd.DataFrame], mode: str, spine: pd.DataFrame | None = None):
    con = load.connect_frames(frames)
    sp = spine_for(frames) if spine is None else spine
    return labels.compute(con, sp, PARAMS, mode, DATA_END)


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.columns) == list(b.columns)
    ha = pd.util.hash_pandas_object(a, index=False).to_numpy()
    hb = pd.util.hash_pandas_object(b, index=False).to_numpy()
    assert np.array_equal(ha, hb)
    for col in a.columns:  # bit patterns too (NaN payloads, -0.0)
        if a[col].dtype == "float64":
            assert a[col].to_numpy().tobytes() == b[col].to_numpy().tobytes(), col


def _time_col(name: str) -> str:
    col = TABLES[name].time_column
    assert col is not None
    return col


def mutate(frames: dict[str, pd.DataFrame], mask_of, how: str) -> dict[str, pd.DataFrame]:
    """Change or delete the rows selected by ``mask_of(name, frame)`` in every table.

    Changes move the row's time (staying on its side of the cutoff), shift other timestamps by
    hours, swap categories and scale numbers, so that any use of these rows would show.
    """
    rng = np.random.default_rng(0)
    out = {}
    for name, frame in frames.items():
        frame = frame.copy()
        mask = mask_of(name, frame).to_numpy()
        if how == "delete":
            out[name] = frame[~mask].reset_index(drop=True)
            continue
        n = int(mask.sum())
        if n == 0:
            out[name] = frame
            continue
        for col in frame.columns:
            values = frame[col]
            if col == "account_id":
                continue
            if values.dtype.kind == "M":
                if col == _time_col(name):
                    shift = pd.to_timedelta(rng.integers(1, 5, n), unit="D")
                    new = values[mask] + (shift if mask_of.after else -shift)
                else:
                    new = values[mask] + pd.to_timedelta(rng.integers(1, 5, n), unit="h")
                frame.loc[mask, col] = new.to_numpy()
            elif values.dtype.kind == "f":
                frame.loc[mask, col] = values[mask].to_numpy() * 3 + 1
            elif str(values.dtype) == "Int32":
                frame.loc[mask, col] = values[mask] + 7
            else:
                frame.loc[mask, col] = _swap(name, col, values[mask])
        if name == "nps":
            frame["score"] = frame["score"].clip(0, 10)
        if name == "tickets":
            frame["csat"] = frame["csat"].clip(1, 5)
        out[name] = frame
    return out


def _swap(table: str, col: str, values: pd.Series) -> list:
    choices = {
        ("orders", "kind"): ["upsell", "refund", "new"],
        ("campaign_events", "action"): ["click", "open", "sent", "unsubscribe"],
        ("tickets", "priority"): ["urgent", "low"],
    }.get((table, col))
    if choices is not None:
        return [choices[i % len(choices)] for i in range(len(values))]
    return [None if pd.isna(v) else f"{v}_x" for v in values]


def at_or_after(cutoff: dt.datetime):
    def mask_of(name: str, frame: pd.DataFrame) -> pd.Series:
        return frame[_time_col(name)] >= cutoff

    mask_of.after = True  # type: ignore[attr-defined]
    return mask_of


def before(cutoff: dt.datetime):
    """Rows before the cutoff; subscriptions: rows that had ended by then.

    Other timestamps of a changed row move by up to 4 hours, so subscription rows are taken
    only when they ended at least a day before the cutoff (they stay ended by it).
    """

    def mask_of(name: str, frame: pd.DataFrame) -> pd.Series:
        if name == "subscriptions":
            return frame["end_at"].notna() & (frame["end_at"] <= cutoff - pd.Timedelta(days=1))
        return frame[_time_col(name)] < cutoff

    mask_of.after = False  # type: ignore[attr-defined]
    return mask_of


# ------------------------------------------------------------------------------------------
# Literal tables
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["change", "delete"])
def test_features_ignore_rows_at_or_after_cutoff(how):
    frames = literal_tables()
    base = feature_frame(frames)
    mutated = mutate(frames, at_or_after(T), how)
    # the mutation really touched every table
    for name in frames:
        assert not frames[name].equals(mutated[name]), name
    assert_identical(base, feature_frame(mutated, spine_for(frames)))


@pytest.mark.parametrize("how", ["change", "delete"])
def test_features_ignore_later_rows_when_later_cutoffs_read_them(how):
    """A spine with a later cutoff too: its rows are read, yet the earlier cutoff's features
    must not see them (windows and lifetime values of every cutoff come from one pass)."""
    frames = literal_tables()
    later = T + dt.timedelta(days=61)
    sp = pd.concat([spine_for(frames), spine_for(frames, later)], ignore_index=True)
    base, feats = features.compute(load.connect_frames(frames), sp, PARAMS)
    # the later cutoff's windows see new event types and category levels: keep the columns
    fixed = {
        "event_types": sorted({f.event_type for f in feats if f.event_type}),
        "categories": {f.name: f.categories for f in feats if f.dtype == "category"},
    }
    mutated, _ = features.compute(
        load.connect_frames(mutate(frames, at_or_after(T), how)), sp, PARAMS, **fixed
    )
    at_t = base["cutoff"] == T
    assert_identical(
        base[at_t].reset_index(drop=True), mutated[mutated["cutoff"] == T].reset_index(drop=True)
    )
    assert not base[~at_t].equals(mutated[mutated["cutoff"] == later])  # the later rows do move
    assert set(CADENCE) <= set(base.columns)


def test_features_do_change_when_rows_before_cutoff_change():
    """Guard against a vacuous test: the same mutation before the cutoff does change features."""
    frames = literal_tables()
    base = feature_frame(frames)
    changed = feature_frame(mutate(frames, before(T), "change"), spine_for(frames))
    assert not base.equals(changed)


CADENCE = (
    *(f"{m}_{w}d" for w in (7, 30, 90, 180, 365) for m in ("orders", "spend", "order_days")),
    "orders_lifetime", "spend_lifetime", "days_since_last_order", "order_days_lifetime",
    "days_since_first_order", "mean_order_value_lifetime", "last_order_value", "mean_gap_days",
    "gap_spread_days", "overdue_ratio", "spend_trend_7d", "spend_trend_30d", "spend_trend_90d",
    "spend_trend_180d",
)  # fmt: skip
"""Order and purchase-cadence features, over the normal and the long windows (180, 365)."""


def orders_only(mask_of):
    """The same mutation, on the orders table only."""

    def only(name: str, frame: pd.DataFrame) -> pd.Series:
        return mask_of(name, frame) & (name == "orders")

    only.after = mask_of.after  # type: ignore[attr-defined]
    return only


@pytest.mark.parametrize("how", ["change", "delete"])
def test_cadence_features_ignore_orders_at_or_after_cutoff(how):
    frames = literal_tables()
    base = feature_frame(frames)
    assert set(CADENCE) <= set(base.columns)
    mutated = mutate(frames, orders_only(at_or_after(T)), how)
    assert len(mutated["orders"]) == (13 if how == "change" else 9)
    assert not frames["orders"].equals(mutated["orders"])
    assert_identical(base, feature_frame(mutated, spine_for(frames)))


@pytest.mark.parametrize("how", ["change", "delete"])
def test_cadence_features_change_when_orders_before_cutoff_change(how):
    """Every order feature reads the rows before the cutoff: mutating them changes each one.

    Deleting them changes every feature; changing them (amounts, kinds, times a few days
    earlier) changes every one except some row and day counts, whose rows stay inside their
    windows.
    """
    frames = literal_tables()
    base = feature_frame(frames).set_index("account_id")
    assert base.loc["a", list(CADENCE)].notna().all()  # every feature has a value to change
    mutated = feature_frame(mutate(frames, orders_only(before(T)), how), spine_for(frames))
    mutated = mutated.set_index("account_id")
    same = {n for n in CADENCE if base[n].equals(mutated[n])}
    if how == "delete":
        assert same == set()
    else:
        assert same == {"orders_7d", "order_days_7d", "orders_30d", "orders_90d",
                        "order_days_180d", "order_days_365d"}  # fmt: skip
    # the other tables' features stay as they were
    others = [c for c in base.columns if c not in CADENCE and not c.startswith(
        ("refund", "upsell", "avg_order_value"))]  # fmt: skip
    pd.testing.assert_frame_equal(base[others], mutated[others], check_exact=True)


@pytest.mark.parametrize("how", ["change", "delete"])
def test_contractual_labels_ignore_rows_before_cutoff(how):
    frames = literal_tables()
    base = label_frame(frames, "contractual")
    mutated = mutate(frames, before(T), how)
    assert not frames["subscriptions"].equals(mutated["subscriptions"])
    assert_identical(base, label_frame(mutated, "contractual", spine_for(frames)))


@pytest.mark.parametrize("how", ["change", "delete"])
def test_orders_labels_ignore_rows_before_cutoff(how):
    frames = literal_tables()
    base = label_frame(frames, "orders")
    # Churn looks only at the label window.
    mutated = mutate(frames, before(T), how)
    assert_identical(
        base[["account_id", "cutoff", "churn", "labeled"]],
        label_frame(mutated, "orders", spine_for(frames))[
            ["account_id", "cutoff", "churn", "labeled"]
        ],
    )
    # Expansion compares with the equally long window before the cutoff and MRR is the lookback
    # spend (DESIGN.md section 4): rows older than both are irrelevant to every label column.
    oldest = T - dt.timedelta(days=max(PARAMS.horizon_days, PARAMS.lookback_days))
    old = {k: v for k, v in frames.items()}
    old["orders"] = pd.concat(
        [frames["orders"], frames["orders"].assign(ordered_at=ts(*["2023-01-05"] * 5))],
        ignore_index=True,
    )
    base_old = label_frame(old, "orders")
    assert_identical(
        base_old, label_frame(mutate(old, before(oldest), how), "orders", spine_for(old))
    )


def test_labels_do_change_when_window_rows_change():
    frames = literal_tables()
    base = label_frame(frames, "contractual")
    mutated = mutate(frames, at_or_after(T), "delete")
    assert not base.equals(label_frame(mutated, "contractual", spine_for(frames)))


# ------------------------------------------------------------------------------------------
# The boundary: 1 us before the cutoff counts, exactly at the cutoff does not
# ------------------------------------------------------------------------------------------


def _one_row_tables(when: dt.datetime) -> dict[str, pd.DataFrame]:
    """Account "a" has one row per table at ``when``; account "z" has the same rows in 2023
    (inside the feature windows, so that every feature column exists whatever ``when`` is)."""
    frames = _single_rows("a", when)
    old = _single_rows("z", dt.datetime(2024, 3, 1))
    return {k: pd.concat([frames[k], old[k]], ignore_index=True) for k in frames}


def _single_rows(account: str, when: dt.datetime) -> dict[str, pd.DataFrame]:
    stamp = ts(when.isoformat(sep=" "))
    a = [account]
    return {
        "accounts": pd.DataFrame({"account_id": a, "created_at": stamp, "segment": ["smb"]}),
        "subscriptions": pd.DataFrame(
            {
                "account_id": a,
                "start_at": stamp,
                "end_at": ts(None),
                "mrr": [100.0],
                "plan": ["pro"],
                "seats": pd.array([4], dtype="Int32"),
            }
        ),
        "orders": pd.DataFrame(
            {
                "account_id": a,
                "ordered_at": stamp,
                "amount": [10.0],
                "kind": ["new"],
                "product": ["x"],
            }
        ),
        "events": pd.DataFrame(
            {
                "account_id": a,
                "occurred_at": stamp,
                "event_type": ["login"],
                "quantity": [1.0],
                "user_id": ["u"],
            }
        ),
        "campaign_events": pd.DataFrame(
            {
                "account_id": a,
                "occurred_at": stamp,
                "campaign_id": ["c"],
                "action": ["click"],
                "campaign_type": ["x"],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "account_id": a,
                "opened_at": stamp,
                "closed_at": ts(None),
                "priority": ["high"],
                "csat": [None],
            }
        ),
        "nps": pd.DataFrame(
            {"account_id": a, "responded_at": stamp, "score": [3.0], "comment": [None]}
        ),
    }


BOUNDARY_FEATURES = {
    "events_7d": 1.0,
    "events_login_7d": 1.0,
    "active_days_7d": 1.0,
    "active_users_7d": 1.0,
    "tenure_days": 1 / 86_400_000_000,
    "mrr_current": 100.0,
    "seats": 4.0,
    "orders_7d": 1.0,
    "orders_lifetime": 1.0,
    "orders_365d": 1.0,
    "spend_365d": 10.0,
    "order_days_7d": 1.0,
    "order_days_365d": 1.0,
    "order_days_lifetime": 1.0,
    "days_since_first_order": 1 / 86_400_000_000,
    "last_order_value": 10.0,
    "clicks_7d": 1.0,
    "tickets_7d": 1.0,
    "tickets_open": 1.0,
    "nps_last": 3.0,
    "days_since_last_event": 1 / 86_400_000_000,
}


def test_row_one_microsecond_before_cutoff_counts():
    frames = _one_row_tables(T - US)
    con = load.connect_frames(frames)
    frame, _ = features.compute(con, spine_for(frames), PARAMS)
    row = frame.set_index("account_id").loc["a"]
    for name, value in BOUNDARY_FEATURES.items():
        assert row[name] == pytest.approx(value, rel=1e-12), name
    assert row["plan"] == "pro"
    assert row["segment"] == "smb"
    assert row["nps_category"] == "detractor"


def test_row_exactly_at_cutoff_does_not_count():
    frames = _one_row_tables(T)
    con = load.connect_frames(frames)
    frame, _ = features.compute(con, spine_for(frames), PARAMS)
    row = frame.set_index("account_id").loc["a"]
    for name in BOUNDARY_FEATURES:
        if name in ("tenure_days", "days_since_last_event", "nps_last",
                    "days_since_first_order", "last_order_value"):  # fmt: skip
            assert np.isnan(row[name]), name
        else:
            assert row[name] == 0.0, name
    assert pd.isna(row["plan"])
    assert pd.isna(row["segment"])
    assert pd.isna(row["nps_category"])


def test_label_window_boundaries():
    """Orders at the cutoff and 1 us before the window end count; before/at the end do not."""
    end = T + dt.timedelta(days=PARAMS.horizon_days)

    def churn(when: dt.datetime) -> float:
        frames = _one_row_tables(when)
        return float(label_frame(frames, "orders").set_index("account_id").loc["a", "churn"])

    assert churn(T) == 0.0
    assert churn(end - US) == 0.0
    assert churn(T - US) == 1.0
    assert churn(end) == 1.0


# ------------------------------------------------------------------------------------------
# Hypothesis-generated tables
# ------------------------------------------------------------------------------------------

# Offsets (microseconds) around the cutoff, with the two boundary instants drawn often.
_DAY_US = 86_400_000_000
_OFFSETS = st.one_of(
    st.sampled_from([0, -1]), st.integers(min_value=-120 * _DAY_US, max_value=60 * _DAY_US)
)
_ACCOUNTS = ["a", "b", "c"]
_OLD = st.integers(min_value=-500 * _DAY_US, max_value=-100 * _DAY_US)
"""Order offsets reaching past the long windows (365 days) and the windows' start."""


def _stamp(offset_us: int) -> pd.Timestamp:
    return pd.Timestamp(T) + pd.Timedelta(microseconds=offset_us)


@st.composite
def random_tables(draw) -> dict[str, pd.DataFrame]:
    def rows(n_max: int) -> list:
        return draw(st.lists(st.tuples(st.sampled_from(_ACCOUNTS), _OFFSETS), max_size=n_max))

    def stamps(rs) -> pd.Series:
        return pd.Series([_stamp(o) for _, o in rs], dtype="datetime64[us]")

    acc = [(a, draw(_OFFSETS)) for a in _ACCOUNTS]
    frames = {
        "accounts": pd.DataFrame(
            {
                "account_id": _ACCOUNTS,
                "created_at": stamps(acc),
                "segment": [draw(st.sampled_from(["smb", "ent"])) for _ in acc],
            }
        )
    }
    ev = rows(25)
    frames["events"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in ev], dtype=str),
            "occurred_at": stamps(ev),
            "event_type": [
                draw(st.sampled_from(["login", "export", "payment_failed"])) for _ in ev
            ],
            "quantity": [1.0] * len(ev),
            "user_id": [draw(st.sampled_from(["u1", "u2", None])) for _ in ev],
        }
    )
    od = rows(10) + [
        (a, o) for a, o in draw(st.lists(st.tuples(st.sampled_from(_ACCOUNTS), _OLD), max_size=4))
    ]
    frames["orders"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in od], dtype=str),
            "ordered_at": stamps(od),
            "amount": [draw(st.sampled_from([9.99, 100.0, 0.1])) for _ in od],
            "kind": [draw(st.sampled_from(["new", "upsell", "refund", None])) for _ in od],
            "product": ["p"] * len(od),
        }
    )
    sb = rows(8)
    durations = [draw(st.one_of(st.none(), st.integers(1, 120 * _DAY_US))) for _ in sb]
    frames["subscriptions"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in sb], dtype=str),
            "start_at": stamps(sb),
            "end_at": pd.Series(
                [
                    None if d is None else _stamp(o + d)
                    for (_, o), d in zip(sb, durations, strict=True)
                ],
                dtype="datetime64[us]",
            ),
            "mrr": [draw(st.sampled_from([10.0, 19.9, 0.3])) for _ in sb],
            "plan": [draw(st.sampled_from(["a", "b"])) for _ in sb],
            "seats": pd.array([draw(st.integers(1, 9)) for _ in sb], dtype="Int32"),
        }
    )
    tk = rows(6)
    closes = [draw(st.one_of(st.none(), st.integers(1, 30 * _DAY_US))) for _ in tk]
    frames["tickets"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in tk], dtype=str),
            "opened_at": stamps(tk),
            "closed_at": pd.Series(
                [
                    None if c is None else _stamp(o + c)
                    for (_, o), c in zip(tk, closes, strict=True)
                ],
                dtype="datetime64[us]",
            ),
            "priority": [draw(st.sampled_from(["low", "high", None])) for _ in tk],
            "csat": [draw(st.sampled_from([1.0, 4.0, None])) for _ in tk],
        }
    )
    ce = rows(10)
    frames["campaign_events"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in ce], dtype=str),
            "occurred_at": stamps(ce),
            "campaign_id": ["c"] * len(ce),
            "action": [draw(st.sampled_from(["sent", "open", "click"])) for _ in ce],
            "campaign_type": ["x"] * len(ce),
        }
    )
    np_ = rows(6)
    frames["nps"] = pd.DataFrame(
        {
            "account_id": pd.Series([a for a, _ in np_], dtype=str),
            "responded_at": stamps(np_),
            "score": [float(draw(st.integers(0, 10))) for _ in np_],
            "comment": [None] * len(np_),
        }
    )
    return frames


_SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(frames=random_tables(), how=st.sampled_from(["change", "delete"]))
def test_features_ignore_future_rows_generated(frames, how):
    base = feature_frame(frames)
    assert_identical(base, feature_frame(mutate(frames, at_or_after(T), how), spine_for(frames)))


@_SETTINGS
@given(frames=random_tables(), how=st.sampled_from(["change", "delete"]))
def test_contractual_labels_ignore_past_rows_generated(frames, how):
    base = label_frame(frames, "contractual")
    assert_identical(
        base, label_frame(mutate(frames, before(T), how), "contractual", spine_for(frames))
    )


@_SETTINGS
@given(frames=random_tables(), how=st.sampled_from(["change", "delete"]))
def test_orders_churn_ignores_past_rows_generated(frames, how):
    cols = ["account_id", "cutoff", "churn", "labeled"]
    base = label_frame(frames, "orders")[cols]
    assert_identical(
        base, label_frame(mutate(frames, before(T), how), "orders", spine_for(frames))[cols]
    )
