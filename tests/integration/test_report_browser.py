"""The HTML report in a real browser: Debian's headless Chromium driven by playwright.

Every page is opened from file:// with the network cut off: any request that is not the page
itself is aborted, recorded and fails the test, as do console errors, page errors and failed
requests. Nothing is skipped: without Chromium or playwright the tests fail and say how to
install them (`playwright install` is not used: its browser download is unreachable here).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnlab import report
from churnlab.report import format_money, format_percent, format_points
from report_fixtures import (
    AWKWARD_NAMES,
    FEATURES,
    band_of,
    full_inputs,
    measurement,
    sparse_inputs,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HOW_TO_INSTALL = (
    "install Debian's Chromium (apt-get update && apt-get install -y chromium, which provides "
    "/usr/bin/chromium) and the playwright package (.venv/bin/pip install 'playwright>=1.40'; "
    "do not run `playwright install`, the tests use /usr/bin/chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing: {HOW_TO_INSTALL}")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {HOW_TO_INSTALL}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        yield b
        b.close()


@dataclass
class Opened:
    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self, shot: Path) -> None:
        assert not self.blocked, (
            f"network requests attempted: {few(self.blocked)} (screenshot {shot})"
        )
        assert self.requests == [self.url], (
            f"requests besides the page: {few(self.requests)} ({shot})"
        )
        assert not self.failed, f"failed requests: {few(self.failed)} (screenshot {shot})"
        assert not self.console, f"console errors: {few(self.console)} (screenshot {shot})"
        assert not self.errors, f"page errors: {few(self.errors)} (screenshot {shot})"


def few(items: list[str], n: int = 3) -> str:
    shown = [x[:300] for x in items[:n]]
    return f"{shown} and {len(items) - n} more" if len(items) > n else str(shown)


def open_report(browser: Any, path: Path) -> Opened:
    opened = open_report_raw(browser, path)
    # The tables' script runs before "load"; if it has not marked the page ready by now, it broke.
    if opened.page.locator("html[data-ready=true]").count() != 1:
        shot = path.with_suffix(".not-ready.png")
        opened.page.screenshot(path=str(shot))
        pytest.fail(
            f"the page's script did not finish: page errors {few(opened.errors)}, console errors "
            f"{few(opened.console)}, blocked requests {few(opened.blocked)} (screenshot {shot})"
        )
    return opened


def open_report_raw(browser: Any, path: Path) -> Opened:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(15_000)
    opened = Opened(page, path.resolve().as_uri())

    def block(route: Any) -> None:
        opened.blocked.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith("file://"), block)
    page.on("request", lambda r: opened.requests.append(r.url))
    page.on("requestfailed", lambda r: opened.failed.append(f"{r.url}: {r.failure}"))
    page.on("console", lambda m: opened.console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.goto(opened.url, wait_until="load")
    return opened


def visible(page: Any, table: str, key: str) -> list[str]:
    return page.eval_on_selector_all(
        f"table#{table} tbody tr.row td[data-key={key}]", "cells => cells.map(c => c.textContent)"
    )


def count(page: Any, table: str) -> tuple[str, int, int]:
    el = page.locator(f"#{table}-count")
    return (
        el.text_content(),
        int(el.get_attribute("data-matching")),
        int(el.get_attribute("data-total")),
    )


def test_full_report_tables_sort_filter_expand_offline(browser, tmp_path):
    inputs = full_inputs(600)
    at_risk = inputs.at_risk
    path = report.write(inputs, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    o = open_report(browser, path)
    page = o.page
    try:
        # The scored rows are all there, the first page in rank order with its formatting.
        text, matching, total = count(page, "at-risk")
        assert (matching, total) == (len(at_risk), len(at_risk)), shot
        assert text == f"showing 1\u201350 of {len(at_risk)}", shot
        by_rank = at_risk.sort_values("rank")
        assert visible(page, "at-risk", "account_id") == by_rank["account_id"].head(50).tolist(), (
            shot
        )
        assert visible(page, "at-risk", "churn_probability") == [
            format_percent(v) for v in by_rank["churn_probability"].head(50)
        ], shot
        # Awkward names come out as the exact text, and none of them ran as markup.
        names = visible(page, "at-risk", "name")
        assert names == by_rank["name"].head(50).tolist(), shot
        assert page.evaluate("() => window.__pwned === undefined"), shot
        assert page.locator("table#at-risk img").count() == 0, shot

        # Sorting by revenue at risk: numbers, descending first, missing values last.
        rar = at_risk.set_index("account_id")["revenue_at_risk"]
        header = page.locator("table#at-risk th[data-key=revenue_at_risk]")
        header.click()
        assert header.get_attribute("aria-sort") == "descending", shot
        ids = visible(page, "at-risk", "account_id")
        values = rar.loc[ids].to_numpy()
        assert list(values) == sorted(values, reverse=True), shot
        assert list(values) == sorted(rar.dropna(), reverse=True)[:50], shot
        assert visible(page, "at-risk", "revenue_at_risk") == [format_money(v, "$") for v in values]
        header.click()
        assert header.get_attribute("aria-sort") == "ascending", shot
        values = rar.loc[visible(page, "at-risk", "account_id")].to_numpy()
        assert list(values) == sorted(rar.dropna())[:50], shot
        # The missing ARRs sit at the very end, after the largest values.
        page.click("#at-risk-last")
        tail = rar.loc[visible(page, "at-risk", "account_id")]
        assert tail.iloc[-3:].isna().all() and tail.iloc[:-3].notna().all(), shot

        # Filtering by band: every visible row has it, and the count is the frame's.
        n_high = int((at_risk["risk_band"] == "high").sum())
        page.select_option("#at-risk-band", label=f"high ({n_high})")
        text, matching, total = count(page, "at-risk")
        assert (matching, total) == (n_high, len(at_risk)), shot
        assert text == f"showing 1\u201350 of {n_high} matching ({len(at_risk)} in total)", shot
        bands = visible(page, "at-risk", "risk_band")
        assert len(bands) == 50 and set(bands) == {"high"}, shot
        page.click("#at-risk-next")
        assert set(visible(page, "at-risk", "risk_band")) == {"high"}, shot
        # Still sorted ascending by revenue at risk within the band, across the page break.
        page.click("#at-risk-first")
        high = at_risk[at_risk["risk_band"] == "high"]["revenue_at_risk"].dropna().sort_values()
        assert list(rar.loc[visible(page, "at-risk", "account_id")]) == list(high.head(50)), shot
        # Two filters at once.
        seg = at_risk[(at_risk["risk_band"] == "high") & (at_risk["segment"] == "smb")]
        n_smb = int((at_risk["segment"] == "smb").sum())
        page.select_option("#at-risk-segment", label=f"smb ({n_smb})")
        assert count(page, "at-risk")[1] == len(seg), shot
        assert set(visible(page, "at-risk", "segment")) == {"smb"}, shot

        # Expanding a row shows its reasons, verbatim, with the points.
        first_id = visible(page, "at-risk", "account_id")[0]
        row = at_risk.set_index("account_id").loc[first_id]
        page.locator("table#at-risk tbody tr.row").first.click()
        assert (
            page.locator("table#at-risk tbody tr.row").first.get_attribute("aria-expanded")
            == "true"
        )
        details = page.locator("table#at-risk tbody tr.details")
        assert details.count() == 1 and details.is_visible(), shot
        reasons = details.locator("li[data-testid=reason] .text").all_text_contents()
        assert reasons == [
            row[f"reason_{k}"] for k in (1, 2, 3) if isinstance(row[f"reason_{k}"], str)
        ]
        points = details.locator("li[data-testid=reason] .pts").all_text_contents()
        assert points == [
            format_points(row[f"reason_{k}_points"])
            for k in (1, 2, 3)
            if not math.isnan(row[f"reason_{k}_points"])
        ], shot
        assert f"Play: {row['play']}" in details.text_content(), shot

        # Search finds the script-injection name as plain text.
        page.click("#at-risk-reset")
        page.fill("#at-risk-search", "pwned")
        hits = at_risk[at_risk["name"].str.lower().str.contains("pwned", regex=False)]
        assert count(page, "at-risk")[1] == len(hits), shot
        assert set(visible(page, "at-risk", "name")) <= set(hits["name"]), shot

        # The other tables and the charts are there.
        assert count(page, "expansion")[1:] == (len(inputs.expansion), len(inputs.expansion))
        assert count(page, "audience-rows")[2] == len(inputs.audience_rows)
        for chart in (
            "chart-churn",
            "chart-revenue-retention",
            "chart-mrr-bridge",
            "chart-upsell",
            "chart-nps",
            "chart-campaigns",
            "calibration-churn",
            "chart-pvr",
        ):
            assert page.locator(f"svg[data-testid={chart}]").is_visible(), f"{chart} ({shot})"
        assert page.locator("[data-testid=drift-warning]").is_visible(), shot
        assert page.locator("[data-testid=notes]").text_content().startswith(inputs.notes[0]), shot

        page.click("#at-risk-reset")
        page.locator("table#at-risk th[data-key=revenue_at_risk]").click()
        page.locator("table#at-risk tbody tr.row").nth(1).click()
        page.screenshot(path=str(shot), full_page=True)
        # The list as a CSM sees it: sorted by revenue at risk, one row opened.
        top, height = page.evaluate(
            "() => { const r = document.querySelector('#at-risk-list').getBoundingClientRect();"
            " return [r.top + window.scrollY, r.height]; }"
        )
        page.screenshot(
            path=str(tmp_path / "at-risk.png"),
            full_page=True,
            clip={"x": 0, "y": top - 8, "width": 1366, "height": min(height, 900)},
        )
        # Printed: no controls, the charts and the current page of rows stay.
        page.emulate_media(media="print")
        assert not page.locator("#at-risk-controls").is_visible(), shot
        assert not page.locator("#at-risk-pager").is_visible(), shot
        assert not page.locator("nav").is_visible(), shot
        assert page.locator("svg[data-testid=chart-churn]").is_visible(), shot
        assert page.locator("table#at-risk tbody tr.row:visible").count() == 50, shot
        page.emulate_media(media="screen")
        o.assert_clean(shot)
    finally:
        if not shot.exists():
            page.screenshot(path=str(shot), full_page=True)
        page.close()


def test_number_formats_in_the_page_match_python(browser, tmp_path):
    # Sorted rows are formatted by the page's script: it must print what report.py prints.
    rng = np.random.default_rng(7)
    edges = [
        0,
        0.4,
        0.5,
        -0.5,
        999.4,
        999.5,
        2250,
        2350,
        99_949,
        99_950,
        999_499.99,
        999_500,
        4_712_345,
        1e12,
        9.9995e14,
        -1_500,
        0.0005,
        0.0125,
        1.00634,
        -0.0004,
        4.05,
        -2.25,
    ]
    values = edges + list(rng.normal(0, 1, 300) * 10.0 ** rng.integers(-4, 10, 300))
    path = report.write(
        report.ReportInputs(
            title="formats", as_of="2025-03-01", generated_at=pd.Timestamp("2025-03-02")
        ),
        tmp_path / "formats.html",
    )
    shot = tmp_path / "formats.png"
    o = open_report(browser, path)
    try:
        got = o.page.evaluate(
            "vs => vs.map(v => { var f = window.churnlabFormat; "
            "return [f.money(v), f.pct(v), f.int(v), f.num(v), f.points(v)]; })",
            values,
        )
        want = [
            [
                report.format_money(v),
                report.format_percent(v),
                report.format_int(v),
                report.format_number(v),
                report.format_points(v),
            ]
            for v in values
        ]
        diffs = [(v, g, w) for v, g, w in zip(values, got, want, strict=True) if g != w]
        assert diffs == [], diffs[:10]
        o.page.screenshot(path=str(shot))
        o.assert_clean(shot)
    finally:
        o.page.close()


def test_missing_pieces_render_notes_without_errors(browser, tmp_path):
    inputs = sparse_inputs()
    path = report.write(inputs, tmp_path / "sparse.html")
    shot = tmp_path / "sparse.png"
    o = open_report(browser, path)
    page = o.page
    try:
        notes = page.locator("[data-testid=notes]").text_content()
        assert inputs.notes[0] in notes, shot
        assert (
            "Not in this report: expansion model; feature drift; expansion list; campaign "
            "audiences." in notes
        ), shot
        for testid in (
            "note-model-expansion",
            "note-drift",
            "note-expansion",
            "note-audiences",
            "note-drivers-expansion",
            "note-chart-mrr-bridge",
            "note-chart-nps",
            "note-chart-campaigns",
            "note-pvr",
            "note-headline-missing",
        ):
            assert page.locator(f"[data-testid={testid}]").is_visible(), f"{testid} ({shot})"
        assert (
            "no NPS survey responses" in page.locator("[data-testid=note-chart-nps]").text_content()
        )
        assert page.locator("svg[data-testid=chart-churn]").is_visible(), shot  # buyer churn
        assert page.locator("svg[data-testid=chart-mrr-bridge]").count() == 0, shot
        assert count(page, "at-risk")[1:] == (len(inputs.at_risk), len(inputs.at_risk)), shot
        assert page.locator("table#expansion").count() == 0, shot
        page.screenshot(path=str(shot), full_page=True)
        o.assert_clean(shot)
    finally:
        page.close()


def big_at_risk(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    p = rng.beta(1.2, 5.0, n)
    arr = rng.gamma(1.6, 14000.0, n)
    feats = np.array([f[1] for f in FEATURES], dtype=object)
    frame = pd.DataFrame(
        {
            "account_id": [f"B{i:07d}" for i in range(n)],
            "name": np.array(AWKWARD_NAMES, dtype=object)[rng.integers(0, len(AWKWARD_NAMES), n)],
            "segment": np.array(["smb", "mid-market", "enterprise"], dtype=object)[
                rng.integers(0, 3, n)
            ],
            "owner": np.array(["Ana", "Bo", "Chen", "Dee"], dtype=object)[rng.integers(0, 4, n)],
            "churn_probability": p,
            "risk_band": [band_of(x) for x in p],
            "arr": arr,
            "revenue_at_risk": p * arr,
            "play": "Usage review call",
        }
    )
    for k in (1, 2, 3):
        frame[f"reason_{k}"] = (
            feats[rng.integers(0, len(feats), n)] + " is low: +4.0 points of churn risk"
        )
        frame[f"reason_{k}_points"] = rng.gamma(2.0, 2.0, n)
    frame["rank"] = frame["revenue_at_risk"].rank(ascending=False, method="first").astype(int)
    return frame


def test_hundred_thousand_rows_page_sort_and_filter(browser, tmp_path):
    n = 100_000
    frame = big_at_risk(n)
    inputs = replace(full_inputs(10), at_risk=frame, audience_rows=None)
    path = report.write(inputs, tmp_path / "big.html")
    shot = tmp_path / "big.png"
    o = open_report(browser, path)
    page = o.page
    try:
        assert count(page, "at-risk") == (f"showing 1\u201350 of {n:,}", n, n), shot
        assert page.locator("table#at-risk tbody tr.row").count() == 50, shot
        page.click("table#at-risk th[data-key=arr]")
        arr = frame.set_index("account_id")["arr"]
        assert list(arr.loc[visible(page, "at-risk", "account_id")]) == list(
            arr.sort_values(ascending=False).head(50)
        ), shot
        n_low = int((frame["risk_band"] == "low").sum())
        page.select_option("#at-risk-band", label=f"low ({n_low:,})")
        assert count(page, "at-risk")[1] == n_low, shot
        page.click("#at-risk-last")
        start, end = (
            int(page.locator("#at-risk-count").get_attribute(a)) for a in ("data-start", "data-end")
        )
        assert end == n_low and start == (n_low - 1) // 50 * 50 + 1, shot
        assert set(visible(page, "at-risk", "risk_band")) == {"low"}, shot
        page.locator("#at-risk-count").scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
        o.assert_clean(shot)
    finally:
        page.close()


def test_the_harness_catches_network_requests_and_console_errors(browser, tmp_path):
    # Without this, an empty list of blocked requests could mean the recording never worked.
    path = tmp_path / "leaky.html"
    path.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="http://127.0.0.1:9/pixel.png"><script>console.error("oops")</script>'
        "</body></html>"
    )
    o = open_report_raw(browser, path)
    try:
        assert o.blocked == ["http://127.0.0.1:9/pixel.png"]
        assert o.requests == [o.url, "http://127.0.0.1:9/pixel.png"]
        # The blocked image's own console error and the script's may come in either order.
        assert "oops" in o.console, o.console
        assert o.failed[0].startswith("http://127.0.0.1:9/pixel.png")
        with pytest.raises(AssertionError, match="network requests attempted"):
            o.assert_clean(tmp_path / "none.png")
    finally:
        o.page.close()


def test_campaign_effects_show_in_the_page(browser, tmp_path):
    inputs = replace(sparse_inputs(), measurement=measurement())
    path = report.write(inputs, tmp_path / "effects.html")
    shot = tmp_path / "effects.png"
    o = open_report(browser, path)
    page = o.page
    try:
        page.click("a[href='#campaign-effects']")
        table = page.locator("table#campaign-effects-table")
        assert table.is_visible(), shot
        assert page.locator("svg[data-testid=chart-campaign-effects] circle").count() == 3, shot
        harm = table.locator("tr.harms td").first
        assert harm.text_content() == "upsell <b>&amp; 2024-10-01 *", shot  # escaped, not markup
        # Harm reads in the page's "bad" colour, the same as negative audience rows.
        assert harm.evaluate("td => getComputedStyle(td).color") == "rgb(179, 38, 30)", shot
        assert (
            "20 held-out accounts" in page.locator("[data-testid=campaign-warnings]").inner_text()
        )
        page.screenshot(path=str(shot), full_page=True)
        o.assert_clean(shot)
    finally:
        page.close()
