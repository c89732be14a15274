"""HTML reports: content, figures, warnings, self-containment, and a headless-browser render.

One twin is calibrated for real (Gompertz, MAP + Laplace: fast). The treated (Claret) and the
non-converged twins get posteriors built by hand around known parameter values, so the tests
stay fast and the diagnostics are exactly what each test needs; the report does not care how a
posterior was obtained.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.compare import ModelComparison
from oncotwin.inference.posterior import Diagnostics, Posterior
from oncotwin.inference.priors import Prior
from oncotwin.inference.problem import SubjectData
from oncotwin.models import get_model
from oncotwin.observe import get_error_model
from oncotwin.report import (
    CohortEntry,
    cohort_report,
    fmt_interval,
    fmt_num,
    forecast_figure,
    patient_filename,
    patient_report,
    pretty_unit,
    write_cohort_report,
    write_patient_report,
)
from oncotwin.report.format import fmt_day, fmt_pct
from oncotwin.schedule import Dose, Schedule, Switch
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLARET = {"v0": 200.0, "kg": 0.04, "kd": 0.25, "lam": 0.02, "sigma": 0.1}


# ---- fixtures ------------------------------------------------------------------------------
def _handmade_posterior(
    subject: SubjectData, model: str, values: dict[str, float], diag: Diagnostics, draws: int
) -> Posterior:
    """Draws scattered (SD 0.05 on the unconstrained scale) around known parameter values."""
    m, err = get_model(model), get_error_model("proportional")
    specs = m.params + err.params
    rng = np.random.default_rng(1)
    z = np.stack(
        [
            float(s.unconstrain(values[s.name], subject.ref))
            + 0.05 * rng.standard_normal((diag.chains, draws))
            for s in specs
        ],
        axis=-1,
    )
    params = {s.name: np.asarray(s.constrain(z[..., i], subject.ref)) for i, s in enumerate(specs)}
    log_lik = rng.normal(-3.0, 0.1, (diag.chains, draws, len(subject.times)))
    settings = {"method": diag.method, "chains": diag.chains, "draws": draws, "warmup": draws}
    return Posterior(
        subject.id, model, "proportional", tuple(s.name for s in specs), z, params, log_lik,
        subject.t0, subject.ref, diag, Prior.default(m, err), diag.method, 7, settings,
    )  # fmt: skip


@pytest.fixture(scope="module")
def untreated() -> tuple[DigitalTwin, dict]:
    times = np.array([0.0, 3, 7, 10, 14, 17, 21])
    y = 100 * np.exp(0.08 * times) * (1 + 0.05 * np.sin(times))
    s = SubjectData("P001", times, y, np.zeros(7, bool), Schedule(), "volume", "mm3")
    post = calibrate_subjects("gompertz", [s], method="laplace", chains=1, draws=400)[0]
    twin = DigitalTwin(s, [post], data_version="synthetic-v1")
    return twin, {"current schedule": twin.forecast(np.linspace(0, 60, 61))}


def _treated_subject() -> SubjectData:
    recorded = Schedule(
        tuple(Dose(float(t), 50.0, "docetaxel") for t in (14, 21, 28)),
        (Switch(10.0, "adt", True), Switch(30.0, "adt", False)),
    )
    times = np.array([0.0, 4, 8, 12, 16, 20, 24, 28, 32])
    model_values = {k: v for k, v in CLARET.items() if k != "sigma"}
    y = np.asarray(simulate("claret", model_values, times, recorded).values)
    y = y * np.exp(0.1 * np.random.default_rng(3).standard_normal(len(times)))
    y[-1] = 15.0  # below the detection limit: recorded at the limit
    cens = np.zeros(len(times), bool)
    cens[-1] = True
    return SubjectData("P002", times, y, cens, recorded, "volume", "mm3")


PLAN = Schedule(tuple(Dose(float(t), 50.0, "docetaxel") for t in range(35, 100, 7)))


@pytest.fixture(scope="module")
def treated() -> tuple[DigitalTwin, dict]:
    s = _treated_subject()
    ok = Diagnostics("nuts", 1.003, 1850.0, 1600.0, 0, 4)
    twin = DigitalTwin(s, [_handmade_posterior(s, "claret", CLARET, ok, 250)], data_version="v2")
    t = np.linspace(0, 100, 101)
    return twin, {
        "current schedule": twin.forecast(t, PLAN),
        "stop treatment": twin.forecast(t, Schedule()),
    }


@pytest.fixture(scope="module")
def unconverged() -> tuple[DigitalTwin, dict]:
    s = _treated_subject()
    bad = Diagnostics("nuts", 1.31, 12.0, 9.0, 7, 2)  # as after chains=2, warmup=5, draws=20
    twin = DigitalTwin(s, [_handmade_posterior(s, "claret", CLARET, bad, 20)])
    return twin, {"current schedule": twin.forecast(np.linspace(0, 100, 51), PLAN)}


def _comparison(lead: float, se: float) -> ModelComparison:
    table = pd.DataFrame(
        {
            "model": ["gompertz", "exponential"],
            "elpd_loo": [-20.0, -20.0 - lead],
            "se": [2.0, se],
            "p_loo": [2.1, 1.4],
            "elpd_diff": [0.0, lead],
            "weight": [0.8, 0.2],
            "n_bad_k": [0, 1],
        }
    )
    return ModelComparison(table, "gompertz", {"gompertz": 0.8, "exponential": 0.2})


# ---- helpers -------------------------------------------------------------------------------
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class _Checker(HTMLParser):
    """Checks that tags nest properly; collects images, links and table headers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.ths = 0
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        self.ths += tag == "th"
        self.tables += tag == "table"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "body" in self.stack and not {"style", "title"} & set(self.stack):
            self.text.append(data)


def _parse(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert not c.errors, c.errors
    assert not c.stack, f"unclosed tags: {c.stack}"
    assert page.startswith("<!DOCTYPE html>")
    return c


def _text(page: str) -> str:
    """The visible text of the page's body, whitespace collapsed."""
    return re.sub(r"[ \t\r\n]+", " ", "".join(_parse(page).text))  # keeps U+202F


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "@import" not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    for img in _parse(page).imgs:
        assert str(img["src"]).startswith("data:image/png;base64,")
        assert img.get("alt"), "every image needs alt text"


# ---- formatting ----------------------------------------------------------------------------
def test_number_and_unit_formatting() -> None:
    thin = "\u202f"
    assert fmt_num(1234.5) == f"1{thin}230"
    assert fmt_num(999.7) == f"1{thin}000"
    assert fmt_num(1234567.0) == f"1{thin}230{thin}000"
    assert fmt_num(0.0874) == "0.0874"
    assert fmt_num(50.0) == "50.0" and fmt_num(50.0, trim=True) == "50"
    assert fmt_num(-2.5) == "\u22122.50"
    assert fmt_num(1.5e-5) == "1.50 × 10⁻⁵"
    assert fmt_num(float("nan")) == "\u2013" and fmt_num(None) == "\u2013"
    assert fmt_num(0) == "0"
    assert fmt_interval(900.0, 1700.0) == f"900\u20131{thin}700"
    assert fmt_day(30.0) == "day 30" and fmt_day(30.5) == "day 30.5"
    assert fmt_pct(1.0, estimate=True) == ">99%" and fmt_pct(0.934) == "93%"
    assert pretty_unit("mm3") == "mm³" and pretty_unit("cm^3") == "cm³"
    assert pretty_unit("1/day") == "/day" and pretty_unit("ng/ml") == "ng/mL"
    assert pretty_unit("1") == "" and pretty_unit("size", "mm3") == "mm³"
    assert patient_filename("P 0/1") == "patient-P_0_1.html"


# ---- patient page --------------------------------------------------------------------------
def test_patient_report_content(untreated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = untreated
    page = patient_report(twin, forecasts, comparison=_comparison(lead=6.0, se=2.0))
    text = _text(page)
    _assert_self_contained(page)
    assert "P001" in text and "mm³" in text and "Tumour volume" in text
    assert "Gompertz" in text and "synthetic-v1" in text
    # Headline: median and 90% interval at the horizon, and the last measurement.
    f = forecasts["current schedule"]
    lo, hi = f.interval(0.9)
    assert f"Forecast at {fmt_day(f.times[-1])} (current schedule): " in text
    assert f"{fmt_num(f.median[-1])}\u00a0mm³ (90% interval {fmt_interval(lo[-1], hi[-1])})" in text
    assert (
        f"currently {fmt_num(twin.subject.y[-1])}\u00a0mm³ at {fmt_day(twin.subject.last_time)}"
        in text
    )
    # Parameters, diagnostics, comparison, provenance.
    for name, q in twin.posterior.summary(0.9).items():
        assert name in text and fmt_interval(q["lo"], q["hi"]) in text
    assert "optimiser converged" in text and "Pareto k" in text
    assert "Preferred model: Gompertz" in text and "meaningful difference" in text
    assert "Provenance" in text and "oncotwin version" in text and "seed" in text
    assert 'id="calibration-warning"' not in page and "DID NOT CONVERGE" not in text
    assert 'href="#comparison"' in page and 'href="#history"' not in page  # contents: present only
    checker = _parse(page)
    assert checker.tables >= 3 and checker.ths >= 10
    assert len(checker.imgs) == 2  # fan chart, posterior histograms


def test_comparison_that_is_not_meaningful(untreated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = untreated
    text = _text(patient_report(twin, forecasts, comparison=_comparison(lead=1.0, se=2.0)))
    assert "do not clearly prefer one model" in text
    assert "unreliable at 1 observation" in text


def test_treated_report_history_and_provenance(treated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = treated
    history = [
        {"version": 1, "created": "2025-01-02", "model": "claret", "data_version": "v1",
         "converged": False},
        {"version": 2, "created": "2025-02-02", "model": "claret", "data_version": "v2",
         "converged": True},
    ]  # fmt: skip
    surprises = [{"time": 32.0, "observed": 15.0, "median": 60.0, "lo": 30.0, "hi": 120.0}]
    page = patient_report(
        twin,
        forecasts,
        history=history,
        surprises=surprises,
        provenance={"twin_version": 2, "site": "<b>demo</b>"},
    )
    text = _text(page)
    _assert_self_contained(page)
    for name, f in forecasts.items():
        lo, hi = f.interval(0.9)
        assert f"({name}): {fmt_num(f.median[-1])}\u00a0mm³ (90% interval" in text
        assert fmt_interval(lo[-1], hi[-1]) in text
    assert "currently below the detection limit" in text
    assert "docetaxel 50 mg × 3 on days 14, 21, 28" in text  # treatment so far
    assert "adt on from day 10 to day 30" in text
    assert "every 7 days from day 35 to day 98" in text  # the current plan
    assert "no further treatment" in text  # the stop-treatment plan
    assert "4 chains agreed (R-hat 1.003 ≤ 1.01)" in text
    assert "no divergent transitions" in text
    assert "History of this twin" in text and "Surprises" in text
    assert "&lt;b&gt;demo&lt;/b&gt;" in page  # provenance text is escaped
    assert "Twin version" in text


def test_treatment_periods_are_shaded(treated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = treated
    fig = forecast_figure(forecasts, twin.subject)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2  # one panel per schedule
    for ax in axes:
        spans = [p for p in ax.patches if p.get_gid() == "treatment:adt"]
        assert len(spans) == 1
        x0, _, w, _ = spans[0].get_bbox().bounds
        assert (x0, x0 + w) == pytest.approx((10.0, 30.0))
        ticks = [c for c in ax.collections if c.get_gid() == "dose:docetaxel"]
        assert len(ticks) == 1
        dose_times = sorted(seg[0][0] for seg in ticks[0].get_segments())
        assert dose_times[:3] == pytest.approx([14.0, 21.0, 28.0])
        assert "Time (days)" in {a.get_xlabel() for a in axes}
        assert ax.get_ylabel().startswith("Tumour volume (mm³")
    current, stop = axes
    n_current = len(
        next(c for c in current.collections if c.get_gid() == "dose:docetaxel").get_segments()
    )
    n_stop = len(
        next(c for c in stop.collections if c.get_gid() == "dose:docetaxel").get_segments()
    )
    assert n_current == 3 + len(PLAN.doses) and n_stop == 3
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"median forecast", "90% prediction interval", "observed", "adt: on"} <= labels


def test_unconverged_twin_gets_a_loud_banner(unconverged: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = unconverged
    assert twin.warning
    page = patient_report(twin, forecasts)
    _assert_self_contained(page)
    body = page[page.index("<body>") :]
    banner = body.index('id="calibration-warning"')
    assert banner < body.index("<main>") < body.index("<h1>")  # first thing on the page
    assert 'role="alert"' in page
    text = _text(page)
    assert "CALIBRATION DID NOT CONVERGE" in text
    assert "must not be used for clinical decisions" in text
    assert "chains disagree (R-hat 1.310 > 1.01)" in text
    assert "7 divergent transitions" in text
    assert "UNRELIABLE" in text  # repeated on the headline itself
    assert "NOT CONVERGED" in text  # and in the diagnostics section


def test_write_patient_report(tmp_path: Path, untreated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = untreated
    out = write_patient_report(tmp_path / "sub" / "p.html", twin, forecasts, title="Board: P001")
    assert out.exists() and "<title>Board: P001</title>" in out.read_text(encoding="utf-8")


# ---- cohort page ---------------------------------------------------------------------------
def test_cohort_report_links_patient_pages(
    untreated: tuple[DigitalTwin, dict],
    treated: tuple[DigitalTwin, dict],
    unconverged: tuple[DigitalTwin, dict],
) -> None:
    twins = {"P001": untreated, "P002": treated}
    entries = [CohortEntry.from_forecast(t, f["current schedule"]) for t, f in twins.values()]
    bad_twin, bad_fc = unconverged
    bad = CohortEntry.from_forecast(bad_twin, bad_fc["current schedule"])
    entries.append(CohortEntry(**{**bad.__dict__, "patient": "P003", "link": None}))
    page = cohort_report(
        entries,
        title="Synthetic cohort",
        links={"P003": "pages/patient-P003.html"},
        comparison=_comparison(lead=6.0, se=2.0),
        provenance={"dataset": "synthetic"},
        forecasts={
            "P001": untreated[1]["current schedule"],
            "P002": treated[1]["current schedule"],
            "P003": bad_fc["current schedule"],
        },
        subjects={"P001": untreated[0].subject, "P002": treated[0].subject},
    )
    _assert_self_contained(page)
    checker = _parse(page)
    assert checker.hrefs.count("patient-P001.html") == 1
    assert "patient-P002.html" in checker.hrefs and "pages/patient-P003.html" in checker.hrefs
    assert len(checker.imgs) == 1
    text = _text(page)
    assert "Calibration did not converge for 1 of 3 patients: P003" in text
    f = untreated[1]["current schedule"]
    assert fmt_num(f.median[-1]) in text
    assert "Preferred model: Gompertz" in text and "synthetic" in text
    with pytest.raises(ValueError, match="refusing link"):
        cohort_report(entries[:1], links={"P001": "javascript:alert(1)"})


def test_write_cohort_report(tmp_path: Path, untreated: tuple[DigitalTwin, dict]) -> None:
    twin, forecasts = untreated
    entry = CohortEntry.from_forecast(twin, forecasts["current schedule"])
    out = write_cohort_report(tmp_path / "cohort.html", [entry], title="One patient")
    page = out.read_text(encoding="utf-8")
    assert 'href="patient-P001.html"' in page and 'id="calibration-warning"' not in page


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, oncotwin.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- in a real browser ---------------------------------------------------------------------
def _render(browser: Any, path: Path, shot: Path) -> None:
    """Load `path`; assert no console or page errors and no request leaving the file; screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(shot), full_page=True)
    page.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_reports_render_in_headless_chromium(
    tmp_path: Path,
    treated: tuple[DigitalTwin, dict],
    unconverged: tuple[DigitalTwin, dict],
) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    twin, forecasts = treated
    patient = write_patient_report(tmp_path / patient_filename("P002"), twin, forecasts)
    entries = [
        CohortEntry.from_forecast(twin, forecasts["current schedule"]),
        CohortEntry.from_forecast(unconverged[0], unconverged[1]["current schedule"]),
    ]
    cohort = write_cohort_report(
        tmp_path / "cohort.html",
        entries[:1] + [CohortEntry(**{**entries[1].__dict__, "patient": "P003"})],
        title="Two patients",
        forecasts={
            "P002": forecasts["current schedule"],
            "P003": unconverged[1]["current schedule"],
        },
    )
    shots = {name: tmp_path / f"report_{name}.png" for name in ("patient", "cohort")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _render(browser, patient, shots["patient"])
            _render(browser, cohort, shots["cohort"])
        finally:
            browser.close()
    for shot in shots.values():
        im = Image.open(shot).convert("RGB")
        colours = im.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50
        assert im.getextrema() != ((255, 255), (255, 255), (255, 255))
    target = os.environ.get("ONCOTWIN_SCREENSHOT_DIR")
    if target:
        for name, shot in shots.items():
            shutil.copy(shot, Path(target) / f"report_{name}.png")
