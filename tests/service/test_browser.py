"""The dashboard in real headless Chromium (Playwright), against the app served by uvicorn.

Log in, open a patient, see the forecast fan chart, toggle an alternative schedule, see the
empty recommendation slot, request a radiotherapy recommendation with the form, follow the
job and read its headline, and see the audit entry of this visit. Screenshots are saved under
the test's tmp dir (and copied to ``$ONCOTWIN_SCREENSHOT_DIR`` when set, as CI artefacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from svcworld import World

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(sqlite_world: World) -> Iterator[tuple[World, str]]:
    """The SQLite world served by uvicorn on a free loopback port, in a thread."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(sqlite_world.app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield sqlite_world, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_dashboard_end_to_end(served: tuple[World, str], tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    world, base = served
    c, h = world.client, world.auth("clin_a")
    r = c.post("/api/patients/P1/forecasts", headers=h, json={
        "name": "docetaxel weekly", "seed": 1,
        "schedule": {"doses": [{"agent": "docetaxel", "amount": 75, "start": 22, "every": 7,
                                "count": 4}]}})  # fmt: skip
    assert r.status_code == 201, r.text
    shots = tmp_path / "screenshots"
    shots.mkdir()
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda req: requests.append(req.url))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/")
            page.fill("#username", "clin_a")
            page.fill("#password", world.tokens["clin_a"])
            page.click("button[type=submit]")
            page.wait_for_selector("#patient-table tbody tr")
            assert page.inner_text("#who") == "clin_a (clinician)"
            rows = page.inner_text("#patient-table tbody")
            assert "P1" in rows and "P2" in rows and "P3" not in rows  # P3: another team
            page.screenshot(path=str(shots / "patients.png"), full_page=True)

            page.click("text=P1")
            page.wait_for_selector("#chart .main-svg")
            page.wait_for_selector("#audit tbody tr")
            traces = page.evaluate(
                "document.getElementById('chart').data.map(t => [t.name, t.visible])"
            )
            names = [t[0] for t in traces]
            assert {"observed", "fitted trajectory", "no treatment", "docetaxel weekly"} <= set(
                names)  # fmt: skip
            visible = dict(t for t in traces if t[0] in ("no treatment", "docetaxel weekly"))
            assert visible == {"no treatment": True, "docetaxel weekly": False}
            page.check("label:has-text('docetaxel weekly')")
            shown = page.evaluate("document.getElementById('chart').data"
                                  ".filter(t => t.legendgroup === 'docetaxel weekly')"
                                  ".map(t => t.visible)")  # fmt: skip
            assert shown == [True, True, True]
            assert page.inner_text("#recommendation") == "No recommendation yet."
            # Request a radiotherapy recommendation (40 draws: cheap) and wait for its headline.
            page.select_option("#rec-modality", "radiotherapy")
            page.fill("#rec-draws", "40")
            page.click("#rec-submit")
            page.wait_for_selector("#rec-headline", timeout=120_000)
            latest = c.get("/api/patients/P1/recommendation", headers=h).json()
            assert latest["available"], latest
            rec = latest["recommendation"]
            assert (rec["modality"], rec["n_draws"]) == ("radiotherapy", 40)
            assert page.inner_text("#rec-headline") == rec["headline"]
            sure = rec["confident"] or rec["standard_is_best"]
            assert ("caution" in page.get_attribute("#rec-headline", "class")) == (
                not sure and bool(rec["best"]))  # fmt: skip
            table = page.inner_text("#rec-table")
            assert "standard of care" in table and rec["standard_of_care"]["name"] in table
            margins = page.inner_text("#rec-constraints")
            assert all(x["text"] in margins for x in rec["constraints"])
            assert page.inner_text("#rec-status").endswith("done.")
            assert "Assumptions" in page.inner_text("#recommendation")
            assert "no treatment effect" in page.inner_text("#fc-text")  # Gompertz
            about = page.inner_text("#about")
            assert "passed its checks" in about and "gompertz" in about
            audit = page.inner_text("#audit tbody")
            assert "clin_a (clinician)" in audit
            assert "read: GET /api/patients/{patient_id}/forecasts" in audit
            page.screenshot(path=str(shots / "patient.png"), full_page=True)
            page.close()
        finally:
            browser.close()
    assert not errors, errors
    assert all(u.startswith(base) for u in requests), [
        u for u in requests if not u.startswith(base)
    ]  # no CDN
    for shot in shots.iterdir():
        im = Image.open(shot).convert("RGB")
        colours = im.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # a rendered page, not a blank one
    target = os.environ.get("ONCOTWIN_SCREENSHOT_DIR")
    if target:
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / f"service_{shot.name}")
    entries = world.svc.audit.entries(patient_id="P1", actor="clin_a")
    assert any(e.resource == "GET /api/patients/{patient_id}/forecasts" for e in entries)
