"""The Dagster UI in headless Chromium (Debian's `chromium`, driven by Playwright with that binary,
so no browser download): the asset graph shows documents -> chunks -> embeddings -> index, and an
asset materialization launched from the UI runs to success. Screenshots land in tests/artifacts/."""

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from rag_assets.devserver import DevStack

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
RUNS = '{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }'

if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


def ui_runs(url: str) -> list[dict]:
    return httpx.post(f"{url}/graphql", json={"query": RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]


def test_asset_graph_lineage_and_materialize_from_the_ui(stack: DevStack):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI"
    ARTIFACTS.mkdir(exist_ok=True)
    before = {r["runId"] for r in ui_runs(stack.url)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # a first-visit newsletter dialog: dismissed whenever it shows up in front of an action (it can appear
        # after the page is idle: on a slower machine it covered "Materialize all" after a one-time check)
        skip = page.get_by_role("button", name="Skip")
        page.add_locator_handler(skip, lambda: skip.click())
        page.goto(f"{stack.url}/locations/rag_assets/asset-groups/ingestion", wait_until="networkidle")
        boxes = {}
        for name in ("documents", "chunks", "embeddings", "index"):
            label = page.get_by_text(name, exact=True).first
            label.wait_for(timeout=30_000)
            boxes[name] = label.bounding_box()
        page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))
        xs = [boxes[n]["x"] for n in ("documents", "chunks", "embeddings", "index")]
        assert xs == sorted(xs) and len(set(xs)) == 4, boxes  # the graph lays lineage out left to right

        page.get_by_role("button", name="Materialize all…").click()
        page.wait_for_timeout(2000)
        confirm = page.get_by_role("button", name="Confirm")  # "upstream not materialized yet" (the model cards' run)
        if confirm.count():
            confirm.click()
        every = page.get_by_role("button", name="All", exact=True)  # one per partition dimension: source, variant
        every.first.wait_for(timeout=30_000)
        for i in range(every.count()):
            every.nth(i).click()
        launch = page.get_by_role("button", name=re.compile(r"^Launch (1 run|backfill)"))
        launch.click()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "materialize_launched.png"))
        browser.close()

    deadline, launched = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        new = [r for r in ui_runs(stack.url) if r["runId"] not in before]
        launched = next((r for r in new if any(t["key"] == "dagster/partition" for t in r["tags"])), None)
        if launched and launched["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert launched and launched["status"] == "SUCCESS", launched
    assert not any(t["key"] == "dagster/sensor_name" for t in launched["tags"])  # launched from the UI, not the sensor
