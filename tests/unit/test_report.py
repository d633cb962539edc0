"""The HTML report without a browser: formats, escaping, self-containment, notes, atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnlab import report
from churnlab.errors import ChurnlabError
from churnlab.report import (
    ReportError,
    ReportInputs,
    format_int,
    format_money,
    format_number,
    format_percent,
    format_points,
)
from churnlab.report_inputs import DASH
from report_fixtures import AWKWARD_NAMES, full_inputs, measurement, sparse_inputs

BARE = {"title": "t", "as_of": dt.date(2025, 3, 1), "generated_at": dt.datetime(2025, 3, 2, 8)}


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((self._in, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def full_page() -> str:
    return report.render(full_inputs(200))


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (950, "950"),
        (999.4, "999"),
        (999.5, "1k"),  # rounds up into the next unit, never "1000"
        (2250, "2.3k"),  # half up, as the page's script does
        (4_700, "4.7k"),
        (5_000, "5k"),
        (99_949, "99.9k"),
        (99_950, "100k"),
        (165_000, "165k"),
        (999_499, "999k"),
        (999_500, "1M"),
        (4_712_345, "4.7M"),
        (47_200_000, "47.2M"),
        (1_230_000_000, "1.2B"),
        (-1_500, "-1.5k"),
        (-0.4, "0"),
        (float("nan"), "\u2014"),
        (None, "\u2014"),
    ],
)
def test_format_money(value, expected):
    assert format_money(value) == expected


def test_format_money_currency_goes_after_the_sign():
    assert format_money(4_712_345, "$") == "$4.7M"
    assert format_money(-1_500, "$") == "-$1.5k"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1234, "12.3%"),
        (0.0, "0.0%"),
        (0.0004, "0.0%"),
        (0.0005, "0.1%"),
        (1.0, "100.0%"),
        (1.00634, "100.6%"),
        (-0.0004, "0.0%"),
        (-0.25, "-25.0%"),
        (float("inf"), "\u2014"),
    ],
)
def test_format_percent(value, expected):
    assert format_percent(value) == expected


def test_format_int_number_points():
    assert format_int(12_345.6) == "12,346"
    assert format_int(-0.4) == "0"
    assert format_number(3.0) == "3"
    assert format_number(1234.567) == "1,234.57"
    assert format_number(-0.004) == "0.00"
    assert format_points(4.04) == "+4.0"
    assert format_points(-2.26) == "-2.3"
    assert format_points(0.04) == "0.0"


# --------------------------------------------------------------------------- self-contained


def test_page_references_nothing_outside_itself(full_page):
    tags = _parse(full_page).tags
    for tag, attrs in tags:
        for name in ("src", "href", "action", "poster", "data"):
            value = (attrs.get(name) or "").strip().lower()
            if value:
                assert value.startswith(("#", "data:")), f"<{tag} {name}={value!r}>"
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", full_page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", full_page, re.I)
    assert "default-src 'none'" in full_page  # the CSP forbids what slipped through anyway


def test_every_data_string_is_escaped(full_page):
    parsed = _parse(full_page)
    # Only the page's own script and one JSON block per big table: no injected script.
    kinds = sorted(a.get("type") or "js" for a, _ in parsed.scripts)
    assert kinds == ["application/json"] * 3 + ["js"]
    assert not any(t == "img" for t, _ in parsed.tags)
    for name in AWKWARD_NAMES:
        if any(ch in name for ch in "<>&\"'"):
            assert name not in full_page, name
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned" in full_page  # first page, as HTML text
    assert (
        "<title>Acme &lt;Analytics&gt; &amp; Co: churn &amp; expansion report</title>" in full_page
    )


def test_json_blocks_cannot_close_their_script_and_round_trip():
    inputs = full_inputs(200)
    page = report.render(inputs)
    blocks = dict(
        re.findall(
            r'<script type="application/json" class="table-data" id="([\w-]+)-data">(.*?)</script>',
            page,
            re.S,
        )
    )
    assert set(blocks) == {"at-risk", "expansion", "audience-rows"}
    for text in blocks.values():
        assert "<" not in text and ">" not in text and "&" not in text
    spec = json.loads(blocks["at-risk"])
    keys = [c["key"] for c in spec["columns"]]
    assert keys[:3] == ["rank", "account_id", "name"]
    assert len(spec["rows"]) == len(inputs.at_risk)
    frame = inputs.at_risk.sort_values("rank")
    names = [r[keys.index("name")] for r in spec["rows"]]
    assert names == frame["name"].tolist()  # exact strings back, tabs, newlines and all
    rar = [r[keys.index("revenue_at_risk")] for r in spec["rows"]]
    assert all(v is None or isinstance(v, float) for v in rar)  # numbers, so they sort as numbers
    assert sum(v is None for v in rar) == int(frame["revenue_at_risk"].isna().sum())
    # Reason sentences ride along for the expanded rows, with their points.
    r1, p1 = spec["reasons"][0]
    assert spec["rows"][0][r1] == frame["reason_1"].iloc[0]
    assert spec["rows"][0][p1] == pytest.approx(frame["reason_1_points"].iloc[0], abs=1e-3)


def test_first_page_is_plain_html_for_print_and_no_script(full_page):
    body = full_page.split('<table class="data" id="at-risk"', 1)[1].split("</table>", 1)[0]
    assert body.count('<tr class="row"') == 50
    assert 'id="at-risk-count" data-testid="at-risk-count" data-total="200"' in full_page
    assert "showing 1\u201350 of 200" in full_page


# ------------------------------------------------------------------------ missing pieces


def test_bare_inputs_render_a_note_in_every_section():
    page = report.render(ReportInputs(**BARE))
    for testid in (
        "note-headline",
        "note-kpis",
        "note-model-churn",
        "note-model-expansion",
        "note-pvr",
        "note-drift",
        "note-drivers-churn",
        "note-drivers-expansion",
        "note-at-risk",
        "note-expansion",
        "note-audiences",
    ):
        assert f'data-testid="{testid}"' in page, testid
    assert "Not in this report: headline figures; KPI trends; churn model; expansion model" in page
    assert '<script type="application/json"' not in page


def test_orders_only_kpis_say_why_subscription_charts_are_absent():
    page = report.render(sparse_inputs())
    assert 'data-testid="note-chart-mrr-bridge"' in page
    assert (
        "MRR bridge: needs subscription data; this data has no subscriptions (orders only)." in page
    )
    assert "Net Promoter Score: no NPS survey responses in the data." in page
    assert "Customer campaign open and click rates: no campaign events in the data." in page
    assert 'data-testid="chart-churn"' in page  # active-customer churn instead
    assert "Active-customer churn rate" in page
    assert 'data-testid="chart-mrr-bridge"' not in page
    assert 'data-testid="note-model-expansion"' in page
    assert (
        "Not in this report: expansion model; feature drift; expansion list; campaign audiences."
        in page
    )


def test_partial_periods_are_marked_in_charts_and_table():
    inputs = full_inputs(50)
    partial = inputs.kpis["partial"]
    assert partial.sum() == 1 and bool(partial.iloc[-1])  # the fixture: March 2025 is partial
    page = report.render(inputs)
    assert "Partial periods (Mar 2025) are shaded" in page
    assert "Mar 2025<br><small>partial</small>" in page
    assert page.count('data-testid="partial-period"') >= 6  # one shaded slot per monthly chart
    assert "Latest complete period: Feb 2025" in page


def test_kpi_kinds_come_from_the_catalogue():
    inputs = full_inputs(50)
    catalogue = inputs.kpi_catalogue.copy()
    catalogue.loc[catalogue["name"] == "open_rate", "kind"] = "outcome"
    page = report.render(ReportInputs(**BARE, kpis=inputs.kpis, kpi_catalogue=catalogue))
    card = page.split('data-testid="kpi-card-open_rate"', 1)[1].split("</div></div>", 1)[0]
    assert 'data-kind="outcome"' in card
    default = report.render(
        ReportInputs(**BARE, kpis=inputs.kpis, kpi_catalogue=inputs.kpi_catalogue)
    )
    card = default.split('data-testid="kpi-card-open_rate"', 1)[1].split("</div></div>", 1)[0]
    assert 'data-kind="activity"' in card


def test_drift_warns_only_above_the_threshold():
    drift = pd.DataFrame(
        {"feature": ["a", "b", "c"], "description": ["A <x>", "B", "C"], "psi": [0.35, 0.2, np.nan]}
    )
    page = report.render(ReportInputs(**BARE, drift=drift))
    assert "1 feature drifted above PSI 0.2" in page and "A &lt;x&gt;" in page
    assert page.count('<tr class="drifted">') == 1  # 0.2 itself is not above 0.2
    calm = report.render(ReportInputs(**BARE, drift=drift, drift_threshold=0.5))
    assert 'data-testid="drift-ok"' in calm and 'data-testid="drift-warning"' not in calm


def test_drift_table_shows_the_shares_without_a_value_when_given():
    drift = pd.DataFrame(
        {"feature": ["plan", "b"], "description": ["subscription plan", "B"], "psi": [0.48, 0.1],
         "missing_trained": [0.0669, 0.0], "missing_now": [0.0, 0.0]}
    )  # fmt: skip
    page = report.render(ReportInputs(**BARE, drift=drift))
    assert "Without a value: training, now" in page
    assert "6.7%, 0.0%" in page and "0.0%, 0.0%" in page
    old = report.render(ReportInputs(**BARE, drift=drift[["feature", "description", "psi"]]))
    assert "Without a value" not in old and "1 feature drifted above PSI 0.2" in old


def test_headline_cards_and_bands():
    inputs = full_inputs(200)
    page = report.render(inputs)
    rar = format_money(inputs.headline["revenue_at_risk"], "$")
    card = page.split('data-testid="card-revenue-at-risk">', 1)[1].split("</div></div>", 1)[0]
    assert f'<div class="label">Revenue at risk</div><div class="value">{rar}</div>' in card
    bands = re.findall(
        r'<td><span class="band band-(\d)">(\w+)</span></td>',
        page.split('<table id="by-band"', 1)[1],
    )
    assert [b for _, b in bands] == ["critical", "high", "medium", "low"]
    assert [j for j, _ in bands] == ["0", "1", "3", "4"]


def test_model_summary_in_words():
    inputs = full_inputs(50)
    page = report.render(inputs)
    assert (
        "Ranks accounts better than both baselines (ROC-AUC 0.815 vs logistic regression 0.801, "
        "recency/activity heuristic 0.723)." in page
    )
    worse = dict(inputs.models["churn"])
    worse["metrics"] = {**worse["metrics"], "baseline_logreg.roc_auc": 0.9}
    page = report.render(ReportInputs(**BARE, models={"churn": worse}))
    assert "Does not beat the logistic regression on ROC-AUC" in page


def test_model_summary_says_whether_a_lead_is_more_than_noise():
    inputs = full_inputs(50)
    assert "95% interval" not in report.render(inputs)  # not logged: nothing claimed
    churn = dict(inputs.models["churn"])
    churn["metrics"] = {
        **churn["metrics"],
        "vs_logreg.roc_auc_diff": -0.0021, "vs_logreg.roc_auc_lo": -0.0092,
        "vs_logreg.roc_auc_hi": 0.0042, "vs_heuristic.roc_auc_diff": 0.092,
        "vs_heuristic.roc_auc_lo": 0.071, "vs_heuristic.roc_auc_hi": 0.113,
    }  # fmt: skip
    page = report.render(ReportInputs(**BARE, models={"churn": churn}))
    assert (
        "ROC-AUC difference from logistic regression -0.002 (95% interval -0.009 to +0.004, "
        "within the noise of one test cutoff); from recency/activity heuristic +0.092 (95% "
        "interval +0.071 to +0.113, clearly ahead)." in page
    )


def test_the_bg_nbd_baseline_is_a_column_and_a_comparison_when_logged():
    inputs = full_inputs(50)
    plain = report.render(inputs)
    table = plain.split('id="metrics-churn"', 1)[1].split("</table>", 1)[0]
    assert "BG/NBD" not in table  # contractual data: no BG/NBD model, no empty column
    churn = dict(inputs.models["churn"])
    churn["metrics"] = {
        **churn["metrics"],
        "baseline_btyd.roc_auc": 0.746,
        "baseline_btyd.log_loss": 0.542,
    }
    page = report.render(ReportInputs(**BARE, models={"churn": churn}))
    table = page.split('id="metrics-churn"', 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers == ["Metric (test cutoff)", "This model", "Logistic regression", "BG/NBD",
                       "Heuristic"]  # fmt: skip
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table.split("Log loss", 1)[1])[:4]
    assert cells == ["0.290", "0.304", "0.542", DASH]
    assert (
        "Ranks accounts better than every baseline (ROC-AUC 0.815 vs logistic regression 0.801, "
        "BG/NBD model 0.746, recency/activity heuristic 0.723)." in page
    )
    churn["metrics"] = {**churn["metrics"], "baseline_btyd.roc_auc": 0.82}
    page = report.render(ReportInputs(**BARE, models={"churn": churn}))
    assert "Does not beat the BG/NBD model on ROC-AUC" in page


def test_a_heuristic_that_was_not_scored_is_no_column_and_no_comparison():
    inputs = full_inputs(50)
    churn = dict(inputs.models["churn"])
    churn["metrics"] = {
        k: v for k, v in churn["metrics"].items() if not k.startswith("baseline_heuristic")
    }
    page = report.render(ReportInputs(**BARE, models={"churn": churn}))
    table = page.split('id="metrics-churn"', 1)[1].split("</table>", 1)[0]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers == ["Metric (test cutoff)", "This model", "Logistic regression"]
    assert (
        "Ranks accounts better than the baseline (ROC-AUC 0.815 vs logistic regression 0.801)."
        in page
    )


def test_table_with_missing_key_column_is_a_warning_not_a_crash():
    frame = pd.DataFrame({"name": ["x"], "churn_probability": [0.3]})
    page = report.render(ReportInputs(**BARE, at_risk=frame, expansion=frame.iloc[:0]))
    assert "The at-risk list lacks the columns account_id; it cannot be shown." in page
    assert "The expansion list lacks the columns account_id" in page
    empty = pd.DataFrame({"account_id": pd.Series([], dtype=str)})
    page = report.render(ReportInputs(**BARE, at_risk=empty))
    assert "The at-risk list is empty: no accounts were selected." in page


def test_attribute_columns_pass_through_with_their_types():
    frame = pd.DataFrame(
        {
            "account_id": ["a1", "a2"],
            "renewal_at": pd.to_datetime(["2025-04-01", None]),
            "is_partner": [True, False],
            "seats": [12, 40],
            "churn_probability": [0.31, 0.05],
            "reason_1_feature": ["f", "g"],  # internal: not a column of the table
            "driver_engagement": [1.0, 2.0],
        }
    )
    page = report.render(ReportInputs(**BARE, at_risk=frame))
    spec = json.loads(re.search(r'id="at-risk-data">(.*?)</script>', page, re.S).group(1))
    cols = {c["key"]: c["type"] for c in spec["columns"]}
    assert cols == {
        "account_id": "text",
        "renewal_at": "text",
        "is_partner": "text",
        "seats": "int",
        "churn_probability": "pct",
    }
    assert [r[1:3] for r in spec["rows"]] == [["2025-04-01", "yes"], [None, "no"]]


# ------------------------------------------------------------------------- inputs and write


def test_inputs_are_checked():
    with pytest.raises(ReportError, match="title is empty"):
        ReportInputs(**{**BARE, "title": "  "})
    with pytest.raises(ReportError, match="at_risk must be a pandas DataFrame"):
        ReportInputs(**BARE, at_risk=[{"account_id": "a"}])
    with pytest.raises(ReportError, match="notes must be a list"):
        ReportInputs(**BARE, notes="one note")
    with pytest.raises(ReportError, match="page_size"):
        ReportInputs(**BARE, page_size=0)
    assert issubclass(ReportError, ChurnlabError)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "out" / "report.html"
    old = os.umask(0o022)
    try:
        path = report.write(ReportInputs(**BARE), target)
    finally:
        os.umask(old)
    assert path == target and target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert oct(target.stat().st_mode & 0o777) == "0o644"

    def broken(_inputs):
        raise ReportError("boom")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(ReportError, match="boom"):
        report.write(ReportInputs(**BARE), target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")  # old report kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_write_refuses_a_folder(tmp_path):
    with pytest.raises(ReportError, match="it is a folder"):
        report.write(ReportInputs(**BARE), tmp_path)
    assert list(Path(tmp_path).iterdir()) == []


def test_a_failed_rename_leaves_neither_temp_file_nor_half_report(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("previous report")

    def no_rename(_src, _dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", no_rename)
    with pytest.raises(ReportError, match="cannot write the report .*disk full"):
        report.write(ReportInputs(**BARE), target)
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_odd_dtypes_and_a_small_page():
    seen = pd.to_datetime(["2025-01-02 03:04", None, "2025-02-01 00:00"]).tz_localize("UTC")
    frame = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3"],
            "segment": pd.Categorical(["smb", None, "ent"]),
            "seats": pd.array([3, None, 7], dtype="Int64"),
            "tags": [["x", "<y>"], None, []],
            "seen_at": seen,
            "churn_probability": [0.5, np.nan, 0.25],
            "arr": [np.inf, 1200.0, None],
        }
    )
    page = report.render(ReportInputs(**BARE, at_risk=frame, page_size=2, currency="<$>"))
    spec = json.loads(re.search(r'id="at-risk-data">(.*?)</script>', page, re.S).group(1))
    keys = [c["key"] for c in spec["columns"]]
    rows = [dict(zip(keys, r, strict=False)) for r in spec["rows"]]
    assert [r["segment"] for r in rows] == ["smb", None, "ent"]
    assert [r["seats"] for r in rows] == [3, None, 7]
    assert [r["tags"] for r in rows] == ["['x', '<y>']", None, "[]"]
    assert [r["seen_at"] for r in rows] == ["2025-01-02 03:04", None, "2025-02-01"]
    assert [r["arr"] for r in rows] == [None, 1200.0, None]  # inf is no amount
    seg = next(f for f in spec["filters"] if f["id"] == "at-risk-segment")
    assert (seg["options"], seg["counts"]) == (["ent", "smb", None], [1, 1, 1])
    assert '<option value="2">(blank) (1)</option>' in page
    body = page.split('<table class="data" id="at-risk"', 1)[1].split("</table>", 1)[0]
    assert body.count('<tr class="row"') == 2 and "showing 1\u20132 of 3" in page
    assert "&lt;$&gt;1.2k" in body and "<$>" not in page


# ------------------------------------------------------------------------ campaign effects


def _section(page: str) -> str:
    start = page.index('<section id="campaign-effects"')
    return page[start : page.index("</section>", start)]


def test_without_a_measurement_the_campaign_section_says_how_to_get_one():
    page = report.render(ReportInputs(**BARE))
    section = _section(page)
    assert 'data-testid="note-campaign-effects"' in section
    assert "run churnlab measure once their outcome windows have closed" in section
    assert '<a href="#campaign-effects">Campaign effects</a>' in page
    assert "campaign-effects-table" not in section


def test_campaign_effects_table_forest_warnings_and_pending():
    m = measurement()
    section = _section(report.render(ReportInputs(**BARE, measurement=m, currency="$")))
    assert "(data end 2025-03-01)" in section and "95% interval" in section
    rows = section.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
    assert len(rows) == 3
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert cells[0] == [
        "csm-save-call-2024-10-01", "retention", "900", "100", "churn rate", "8.0%", "14.0%",
        "-6.0", "-12.1 to -1.0", "helps: lowered churn", "$64.8k", "$135k",
    ]  # fmt: skip
    # Escaped id, starred for its warning; a harmful effect is said and coloured as harm.
    assert cells[1][0] == "upsell &lt;b&gt;&amp;amp; 2024-10-01 *"
    assert cells[1][4:10] == [
        "expansion rate", "5.0%", "25.0%", "-20.0", "-42.0 to -3.1", "harms: lowered expansion"
    ]  # fmt: skip
    assert rows[1].startswith('<tr class="harms">') and rows[0].startswith('<tr class="helps">')
    assert cells[2][7:10] == ["+0.6", "-6.0 to +5.0", "no detectable effect"]
    assert section.count("<circle") == 3  # one estimate per measured campaign
    warn = section.split('data-testid="campaign-warnings"')[1]
    assert "20 held-out accounts (need at least 30)" in warn
    assert "a warning on the other outcome" not in section  # the campaign's own outcome only
    pend = section.split('data-testid="campaign-pending"')[1]
    assert "training-session-2025-02-01, 250 accounts: outcome window closes 2025-05-02" in pend


def test_a_measurement_with_no_complete_campaign_is_a_note_with_the_pending_ones():
    m = measurement() | {"campaigns": measurement()["campaigns"].iloc[:0]}
    section = _section(report.render(ReportInputs(**BARE, measurement=m)))
    assert "No campaign has a complete outcome window yet (data end 2025-03-01)." in section
    assert 'data-testid="campaign-pending"' in section


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"campaigns": None}, "needs 'campaigns'"),
        ({"campaigns": pd.DataFrame(), "effects": pd.DataFrame()}, "unknown keys"),
        ({"campaigns": pd.DataFrame(), "pending": [1]}, r"measurement\['pending'\] must be"),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_malformed_measurements_are_refused(bad, message):
    with pytest.raises(ReportError, match=message):
        ReportInputs(**BARE, measurement=bad)


def test_the_report_reads_the_latest_measurement_up_to_its_scoring(tmp_path):
    from churnlab import reporting
    from churnlab.config import Params

    params = Params.model_validate({"measure": {"out": str(tmp_path / "m")}})
    assert reporting.read_measurement(params, dt.datetime(2025, 3, 1)) is None
    for day, n in (("2025-01-01", 1), ("2025-03-01", 2), ("2025-04-01", 3)):
        folder = tmp_path / "m" / day
        folder.mkdir(parents=True)
        measurement()["campaigns"].head(n).to_csv(folder / "campaigns.csv", index=False)
        for name in ("warnings", "pending"):
            measurement()[name].to_csv(folder / f"{name}.csv", index=False)
        (folder / "run.json").write_text(f'{{"data_end": "{day}", "settings": {{"level": 0.9}}}}')
    got = reporting.read_measurement(params, dt.datetime(2025, 3, 1))
    assert got is not None and len(got["campaigns"]) == 2
    assert (got["data_end"], got["level"]) == (pd.Timestamp("2025-03-01"), 0.9)
    section = _section(report.render(ReportInputs(**BARE, measurement=got)))
    assert "90% interval" in section and section.count("<circle") == 2
