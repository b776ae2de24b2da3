"""Report and dashboard: rendered from a real ledger, opened in real headless Chromium
(skipped without Chromium, failed instead when TIERWISE_REQUIRE_ALL is set, as in CI).

Set TIERWISE_UPDATE_SCREENSHOTS=1 to copy the screenshots to docs/img/ for the README.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from test_accounting_workload import make_records

from router.accounting.dashboard import dashboard_data, dashboard_html, dashboard_routes
from router.accounting.ledger import Ledger
from router.accounting.metrics import Metrics
from router.accounting.records import summarize
from router.accounting.report import (
    add_report_arguments,
    kpis,
    parse_since,
    render_report,
    run_report,
)


@pytest.fixture(scope="session")
def browser() -> str:
    """Chromium's path: skip without it on a developer's machine, fail in CI."""
    path = shutil.which("chromium")
    if path is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("TIERWISE_REQUIRE_ALL"):
            pytest.fail(reason + "; CI must install it")
        pytest.skip(reason)
    return path


ROOT = Path(__file__).parents[1]
DOCS_IMG = ROOT / "docs" / "img"
PANEL_TITLES = [
    "Tier mix",
    "Cost vs always-largest baseline",
    "Cumulative savings",
    "CO2e per 1K tokens",
    "Latency p50 / p99",
    "Escalation, coalescing",
]


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself requested, from Chromium's net log. Chromium's own background
    requests (time sync, component updates; initiator "not an origin") are left out."""
    text = netlog.read_text(errors="replace")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # the file is left unterminated if Chromium did not finish
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [e.get("params", {}) for e in log["events"] if e["type"] == start_job]
    return sorted({p["url"] for p in jobs if "url" in p and p.get("initiator") != "not an origin"})


def chromium(browser: str, *args: str, timeout: float = 90) -> tuple[str, list[str]]:
    """Run headless Chromium; returns (stdout, URLs the page requested)."""
    with tempfile.TemporaryDirectory() as profile:
        netlog = Path(profile) / "net.json"
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--log-net-log={netlog}",
            "--hide-scrollbars",
            *args,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        return out.stdout, page_requests(netlog)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.I)
    assert not re.search(r"@import|<link|<iframe|<img", page, re.I)
    assert "Content-Security-Policy" in page


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    led = Ledger(tmp_path_factory.mktemp("ledger") / "ledger.db")
    for r in make_records(500, seed=5, end=time.time() - 60, span_s=8 * 3600):
        led.append(r)
    led.flush()
    yield led
    led.close()


def test_report_files(ledger, tmp_path):
    records = ledger.query()
    html_path, md_path = render_report(records, tmp_path / "out", title="Weekly digest")
    page = html_path.read_text()
    assert_self_contained(page)
    assert page.count("<svg") == 6
    for title in PANEL_TITLES:
        assert html.escape(title) in page
    for _, text in kpis(summarize(records)).values():
        assert html.escape(text) in page
    md = md_path.read_text()
    s = summarize(records)
    assert md.startswith("# Weekly digest") and f"{s['requests']:,} requests" in md
    assert "| small |" in md and "low_confidence" in md
    empty_html, _ = render_report([], tmp_path / "empty")
    assert "no requests in this window" in empty_html.read_text()


def test_report_cli(ledger, tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_report_arguments(p)
    out = tmp_path / "digest"
    assert (
        run_report(p.parse_args(["--ledger", str(ledger.path), "--since", "2h", "--out", str(out)]))
        == 0
    )
    n = len(ledger.query(time.time() - 7200))
    assert 0 < n < 500 and f"{n} requests" in capsys.readouterr().out
    assert (out / "report.html").exists() and (out / "summary.md").exists()
    assert run_report(p.parse_args(["--ledger", str(ledger.path), "--since", "7x"])) == 2
    assert "invalid --since '7x'" in capsys.readouterr().err
    missing = tmp_path / "nope.db"
    assert run_report(p.parse_args(["--ledger", str(missing)])) == 2
    assert "ledger not found" in capsys.readouterr().err and not missing.exists()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    assert run_report(p.parse_args(["--ledger", str(junk)])) == 2
    assert "is not a tierwise ledger" in capsys.readouterr().err
    policy = tmp_path / "policy.toml"
    shipped = (Path(__file__).parents[1] / "policies" / "openai-anthropic.toml").read_text()
    assert 'path = "tierwise-ledger.db"' in shipped
    policy.write_text(shipped.replace('path = "tierwise-ledger.db"', f'path = "{ledger.path}"'))
    out2 = tmp_path / "from-policy"
    assert run_report(p.parse_args(["--policy", str(policy), "--out", str(out2)])) == 0
    assert (out2 / "summary.md").exists() and "500 requests" in capsys.readouterr().out
    assert run_report(p.parse_args(["--policy", str(tmp_path / "none.toml")])) == 2
    assert "policy not found" in capsys.readouterr().err
    assert parse_since("2026-11-01") == 1793491200.0
    assert parse_since("90m", now=10_000) == 10_000 - 5400


def test_report_in_chromium(browser, ledger, tmp_path):
    records = ledger.query()
    html_path, _ = render_report(records, tmp_path)
    shot = tmp_path / "report.png"
    chromium(browser, f"--screenshot={shot}", "--window-size=1280,1400", html_path.as_uri())
    assert png_size(shot) == (1280, 1400) and shot.stat().st_size > 40_000
    dom, urls = chromium(browser, "--dump-dom", html_path.as_uri())
    assert urls == []  # the file asks for nothing
    text = visible_text(dom)
    for title in PANEL_TITLES:
        assert title in text
    s = summarize(records)
    assert kpis(s)["saved"][1] in text and kpis(s)["requests"][1] in text
    if os.environ.get("TIERWISE_UPDATE_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS_IMG / "report.png")


@pytest.fixture(scope="module")
def server(ledger):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    metrics = Metrics()
    metrics.observe_redis_fallback("cache")

    async def empty(request):  # the bare page: everything on it must come from polling
        return HTMLResponse(dashboard_html(data_url="/dashboard/data", refresh_s=1))

    routes = dashboard_routes(ledger, metrics, refresh_s=1)
    app = Starlette(routes=[*routes, Route("/empty", empty)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", metrics
    srv.should_exit = True
    t.join(10)


def test_dashboard_data_endpoint(server, ledger):
    base, metrics = server
    with urllib.request.urlopen(f"{base}/dashboard/data") as r:
        assert r.headers["cache-control"] == "no-store"
        d = json.loads(r.read())
    assert set(d["panels"]) == {"tier_mix", "cost", "savings", "co2e", "latency", "rates"}
    assert d["summary"]["requests"] == 500
    assert d["kpis"]["redis_fallbacks"][1] == "1"
    local = json.loads(json.dumps(dashboard_data(ledger, metrics)))
    assert local["kpis"] == d["kpis"] and local["summary"]["cost_usd"] == pytest.approx(
        ledger.summary()["cost_usd"]
    )
    with pytest.raises(ValueError):
        dashboard_html(data_url="https://example.com/data")


@pytest.mark.parametrize("page", ["empty", "dashboard"])
def test_dashboard_live_in_chromium(browser, server, ledger, tmp_path, page):
    base, _ = server
    url = f"{base}/{page}"
    with urllib.request.urlopen(url) as r:
        assert_self_contained(r.read().decode())
    dom, urls = chromium(browser, "--dump-dom", "--virtual-time-budget=4000", url)
    assert all(u.startswith(base + "/") for u in urls), urls  # same origin only
    assert f"{base}/dashboard/data" in urls  # the page polled
    polls = re.search(r'data-polls="(\d+)"', dom)
    assert polls and int(polls.group(1)) >= 1
    text = visible_text(dom)
    status = re.search(r'<p id="status"[^>]*>([^<]*)</p>', dom).group(1)
    assert "updated" in status and "stale" not in status, status
    for title in PANEL_TITLES:
        assert title in text
    s = summarize(ledger.query(time.time() - 86400))
    for key in ("requests", "cost", "saved", "co2e_per_1k", "latency", "escalation"):
        assert kpis(s)[key][1] in text, key
    assert dom.count("<svg") == 6 and dom.count("<rect") > 50  # bars arrived via polling
    if page == "dashboard":
        shot = tmp_path / "dashboard.png"
        chromium(
            browser,
            f"--screenshot={shot}",
            "--window-size=1280,1400",
            "--virtual-time-budget=3000",
            url,
        )
        assert png_size(shot) == (1280, 1400) and shot.stat().st_size > 40_000
        if os.environ.get("TIERWISE_UPDATE_SCREENSHOTS"):
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, DOCS_IMG / "dashboard.png")


def test_dashboard_shows_new_requests(server, ledger):  # after tests counting the ledger
    base, _ = server

    def requests_shown() -> int:
        with urllib.request.urlopen(f"{base}/dashboard/data") as r:
            return json.loads(r.read())["summary"]["requests"]

    before = requests_shown()
    ledger.append(make_records(1, seed=99, end=time.time())[0])
    time.sleep(0.6)  # the routes cache one aggregation for refresh_s / 2
    assert requests_shown() == before + 1


def test_tierwise_report_command(tmp_path):
    led = Ledger(tmp_path / "cli.db")
    for r in make_records(40, seed=8, end=time.time() - 10, span_s=3600):
        led.append(r)
    led.close()
    cmd = [
        sys.executable,
        "-m",
        "router",
        "report",
        "--ledger",
        str(tmp_path / "cli.db"),
        "--since",
        "1d",
        "--out",
        str(tmp_path / "out"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "40 requests" in out.stdout and (tmp_path / "out" / "report.html").exists()
    bad = subprocess.run(
        [*cmd[:-4], "--since", "yesterday"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert bad.returncode == 2 and "invalid --since 'yesterday'" in bad.stderr
