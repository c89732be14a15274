"use strict";
const COLOURS = ["#1f4e99", "#b3261e", "#2e7d32", "#8e24aa", "#ef6c00", "#00838f"];

function methodWords(m) {
  return { nuts: "full Bayesian sampling (NUTS)", laplace: "a fast approximation (MAP + Laplace)",
           smc: "sequential Monte Carlo" }[m] || m;
}

function aboutTwin(twin, fc) {
  const d = twin.diagnostics || {};
  const items = [
    `Model: ${twin.model}, version ${twin.version} of this patient's twin, built ${twin.created_at.slice(0, 16).replace("T", " ")} UTC.`,
    `Calibrated to the data known at ${twin.data_as_of.slice(0, 16).replace("T", " ")} UTC (data version ${twin.data_version}) by ${methodWords(twin.method)}, random seed ${twin.seed}.`,
    twin.converged ? "The calibration passed its checks: the forecasts below can be used as stated."
      : "The calibration did NOT pass its checks: treat every forecast below with caution.",
  ];
  if (d.rhat_max !== null && d.rhat_max !== undefined) items.push(`Largest R-hat ${OT.num(d.rhat_max, 4)} (should be at most 1.01); ${d.divergences || 0} divergent transitions.`);
  if (d.pareto_k !== null && d.pareto_k !== undefined) items.push(`Pareto k of the approximation ${OT.num(d.pareto_k, 2)} (below 0.7 is reliable).`);
  const prov = (fc && fc.provenance) || {};
  items.push(`Software: oncotwin ${twin.oncotwin_version}; prior: ${prov.prior || "default"}; forecast seed ${prov.forecast_seed ?? "—"}.`);
  return items;
}

function fanTraces(f, i, lastObs, visible) {
  const c = COLOURS[i % COLOURS.length];
  const after = f.times.map((t, k) => (t >= lastObs ? k : -1)).filter((k) => k >= 0);
  const pick = (a) => after.map((k) => a[k]);
  const t = pick(f.times);
  const band = (lo, hi, alpha, name) => ({
    x: t.concat(t.slice().reverse()), y: pick(hi).concat(pick(lo).reverse()), fill: "toself",
    fillcolor: c + alpha, line: { width: 0 }, hoverinfo: "skip", name, legendgroup: f.schedule_name,
    showlegend: false, visible, type: "scatter", mode: "lines",
  });
  return [
    band(f.lo90, f.hi90, "22", `${f.schedule_name}: 90%`),
    band(f.lo50, f.hi50, "44", `${f.schedule_name}: 50%`),
    { x: t, y: pick(f.median), name: f.schedule_name, legendgroup: f.schedule_name, visible,
      line: { color: c, width: 2, dash: "dash" }, type: "scatter", mode: "lines" },
  ];
}

function el(parent, tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  parent.appendChild(e);
  return e;
}

function outcomeUnit(r) {
  const u = r.objective.unit;
  return u === "day" ? "days" : u === "data" || u === "probability" ? "" : u;
}

// The recommendation in words first (as the HTML report): the headline, coloured when the data
// do not support a confident advice, then best schedule vs standard of care, margins, caveats.
function showRecommendation(slot, rec, latestVersion) {
  slot.replaceChildren();
  if (!rec.available) {
    slot.textContent = rec.message === "no recommendation yet" ? "No recommendation yet." : rec.message;
    return;
  }
  const r = rec.recommendation;
  if (r.warning) {
    el(slot, "p", `Warning: the calibration behind this recommendation did not converge (${r.warning}). Not for clinical decisions.`, "alert");
  }
  const feasible = (r.best || []).length > 0;
  const sure = r.confident || r.standard_is_best;
  const head = el(slot, "p", r.headline, "headline" + (!feasible ? " alert" : sure ? "" : " caution"));
  head.id = "rec-headline";
  const cap = r.modality.charAt(0).toUpperCase() + r.modality.slice(1);
  el(slot, "p", `${cap}: optimising ${r.objective.label} (${r.risk.label}) over ${r.n_draws} posterior draws (seed ${r.seed}); ` +
    `${r.n_candidates} schedules compared on the same draws. A schedule is recommended only if it beats the standard of care ` +
    `in at least ${Math.round(100 * r.threshold)}% of draws.`, "sub");
  const prov = r.provenance || {};
  if (latestVersion && prov.twin_version && prov.twin_version !== latestVersion) {
    el(slot, "p", `Computed on twin version ${prov.twin_version}; the latest is version ${latestVersion}. Request a new recommendation.`, "caution");
  }
  const unit = outcomeUnit(r);
  const table = el(slot, "table");
  table.id = "rec-table";
  el(table, "caption", `Best schedule and the standard of care: ${r.objective.label}` + (unit ? ` (${unit})` : ""));
  table.insertAdjacentHTML("beforeend", '<thead><tr><th scope="col">Schedule</th><th scope="col">Role</th><th scope="col">Median</th>' +
    '<th scope="col">90% interval</th><th scope="col">Constraints</th></tr></thead>');
  const body = el(table, "tbody");
  const rows = (r.best || []).filter((b) => !b.standard_of_care).slice(0, 1).concat([r.standard_of_care]);
  for (const b of rows) {
    const tr = el(body, "tr");
    el(tr, "td", b.name);
    el(tr, "td", b.standard_of_care ? "standard of care" : "best found");
    el(tr, "td", OT.num(b.median));
    el(tr, "td", `${OT.num(b.lo90)} to ${OT.num(b.hi90)}`);
    el(tr, "td", b.feasible ? "all met" : "VIOLATED", b.feasible ? "" : "warn");
  }
  if ((r.constraints || []).length) {
    el(slot, "h3", `Constraint margins of ${r.schedule_name}`);
    const ul = el(slot, "ul");
    ul.id = "rec-constraints";
    for (const c of r.constraints) el(ul, "li", c.text, c.met ? "" : "warn");
  }
  if ((r.notes || []).length) {
    el(slot, "h3", "Assumptions");
    const ul = el(slot, "ul");
    for (const n of r.notes) el(ul, "li", n);
  }
  el(slot, "p", `From optimisation job ${rec.job_id ?? "—"} on twin version ${prov.twin_version ?? "—"} (${prov.model || "model"}, ${prov.method || ""} calibration).`, "sub");
}

// Start an optimisation job, follow its progress, then show its result.
function requestForm(base, slot, latestVersion) {
  const form = document.getElementById("rec-form");
  const button = document.getElementById("rec-submit");
  const bar = document.getElementById("rec-progress");
  const status = document.getElementById("rec-status");
  if (!latestVersion) {
    button.disabled = true;
    status.textContent = "A recommendation needs a twin: calibrate one first.";
    return;
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { modality: document.getElementById("rec-modality").value,
                   draws: Number(document.getElementById("rec-draws").value) };
    const objective = document.getElementById("rec-objective").value.trim();
    if (objective) body.objective = objective;
    button.disabled = true;
    status.className = "";
    status.textContent = "Starting the optimisation…";
    bar.hidden = false;
    bar.value = 0;
    try {
      let job = await OT.api(`${base}/recommendations`, { method: "POST", body });
      while (job.status === "queued" || job.status === "running") {
        bar.value = job.progress;
        status.textContent = `Job ${job.id} ${job.status}` + (job.label ? `: ${job.label}` : "") + ` (${Math.round(100 * job.progress)}%)`;
        await new Promise((resolve) => setTimeout(resolve, 500));
        job = await OT.api(`/api/jobs/${job.id}`);
      }
      if (job.status === "failed") throw new Error(`The optimisation failed: ${job.error}`);
      bar.value = 1;
      status.textContent = `Job ${job.id} done.`;
      showRecommendation(slot, await OT.api(`${base}/recommendation`), latestVersion);
    } catch (e) {
      status.className = "error";
      status.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}

(async function () {
  if (!OT.token()) { location.href = "index.html"; return; }
  await OT.me();
  const pid = new URLSearchParams(location.search).get("id");
  document.getElementById("title").textContent = `Patient ${pid}`;
  const base = `/api/patients/${encodeURIComponent(pid)}`;
  const patient = await OT.api(base);

  // Data, consent
  const cov = Object.entries(patient.covariates).map(([k, v]) => `${k}: ${v}`).join("; ");
  document.getElementById("covariates").textContent = `Care teams: ${patient.teams.join(", ")}. ${cov ? "Covariates: " + cov + "." : ""}`;
  const ev = document.querySelector("#events tbody");
  for (const e of patient.events) {
    const tr = document.createElement("tr");
    const what = e.evid === 0 ? `${e.kind} (${e.unit})` : e.evid === 1 ? `dose of ${e.agent}` : `${e.agent} ${e.on ? "on" : "off"}`;
    const value = e.evid === 0 ? OT.num(e.dv, 4) + (e.cens ? " (below limit)" : "") : e.evid === 1 ? `${OT.num(e.amt, 4)} ${e.unit}` : "";
    tr.innerHTML = `<td>${OT.num(e.time, 4)}</td><td>${OT.esc(what)}</td><td>${OT.esc(value)}</td>`;
    ev.appendChild(tr);
  }
  const consent = document.getElementById("consent");
  const latest = {};
  for (const c of patient.consent) latest[c.scope] = c;
  for (const scope of ["care", "research", "sharing"]) {
    const c = latest[scope];
    const li = document.createElement("li");
    li.textContent = c ? `${scope}: ${c.granted ? "granted" : "refused"} from ${c.valid_from.slice(0, 10)}` +
      (c.valid_until ? ` until ${c.valid_until.slice(0, 10)}` : "") + (c.holds ? " (in force)" : " (not in force)")
      : `${scope}: not recorded`;
    consent.appendChild(li);
  }

  // Forecasts
  if (!patient.twins.length) {
    document.getElementById("fc-text").textContent = "This patient has no twin yet.";
  } else {
    const fc = await OT.api(`${base}/forecasts`);
    const twin = patient.twins[patient.twins.length - 1];
    if (!fc.converged || fc.warning) {
      const b = document.getElementById("banner");
      b.hidden = false;
      b.textContent = "Warning: the calibration behind these forecasts did not converge. " + (fc.warning || "");
    }
    document.getElementById("fc-text").textContent =
      `Twin version ${fc.twin_version}: ${fc.kind} in ${fc.unit}; shaded bands are 50% and 90% prediction intervals from day ${OT.num(fc.last_observation)} on.` +
      (fc.treatment_effect ? "" : " This twin's model has no treatment effect, so every plan forecasts the same course.");
    const first = fc.forecasts[0];
    const fitted = first.times.map((t, k) => [t, first.median[k]]).filter(([t]) => t <= fc.last_observation);
    const traces = [
      { x: fc.observations.times, y: fc.observations.values, name: "observed", mode: "markers",
        type: "scatter", marker: { color: "#111", size: 8 } },
      { x: fitted.map((p) => p[0]), y: fitted.map((p) => p[1]), name: "fitted trajectory",
        mode: "lines", type: "scatter", line: { color: "#555", width: 2 } },
    ];
    const groups = [];
    fc.forecasts.forEach((f, i) => {
      const tr = fanTraces(f, i, fc.last_observation, i === 0);
      groups.push([traces.length, traces.length + 1, traces.length + 2]);
      traces.push(...tr);
    });
    const layout = { margin: { t: 10, r: 10 }, height: 420, xaxis: { title: { text: "day" } },
                     yaxis: { title: { text: `${fc.kind} (${fc.unit})` } }, legend: { orientation: "h" } };
    await Plotly.newPlot("chart", traces, layout, { responsive: true, displaylogo: false });
    const plans = document.getElementById("plans");
    const tbody = document.querySelector("#fc-table tbody");
    fc.forecasts.forEach((f, i) => {
      const id = `plan-${i}`;
      const wrap = document.createElement("div");
      wrap.innerHTML = `<input type="checkbox" id="${id}" ${i === 0 ? "checked" : ""}> <label for="${id}"></label>`;
      wrap.querySelector("label").textContent = f.schedule_name + (i === 0 ? " (current plan)" : "");
      wrap.querySelector("input").addEventListener("change", (ev) => {
        Plotly.restyle("chart", { visible: ev.target.checked }, groups[i]);
      });
      plans.appendChild(wrap);
      const k = f.times.length - 1;
      const row = document.createElement("tr");
      row.innerHTML = `<td></td><td>${OT.num(f.times[k])}</td><td>${OT.num(f.median[k])}</td><td>${OT.num(f.lo90[k])} to ${OT.num(f.hi90[k])}</td>`;
      row.firstChild.textContent = f.schedule_name;
      tbody.appendChild(row);
    });
    const about = document.getElementById("about");
    for (const s of aboutTwin(twin, first)) {
      const li = document.createElement("li");
      li.textContent = s;
      about.appendChild(li);
    }
  }

  // Recommendation, and the form that requests one
  const slot = document.getElementById("recommendation");
  const latestVersion = patient.twins.length ? patient.twins[patient.twins.length - 1].version : null;
  const rec = await OT.api(`${base}/recommendation`).catch((e) => ({ available: false, message: e.message }));
  showRecommendation(slot, rec, latestVersion);
  requestForm(base, slot, latestVersion);

  // Surprises
  const surprises = await OT.api(`${base}/surprises`);
  document.getElementById("surprises").textContent = surprises.length
    ? surprises.map((s) => `day ${OT.num(s.time)}: observed ${OT.num(s.observed)} outside ${OT.num(s.lo)}–${OT.num(s.hi)} (twin v${s.twin_version})`).join("; ")
    : "None: every new observation fell inside the previous twin's 95% interval.";

  // Audit trail (last: it shows this visit)
  const audit = await OT.api(`${base}/audit?limit=50`);
  const ab = document.querySelector("#audit tbody");
  for (const a of audit) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${a.at.slice(0, 19).replace("T", " ")}</td><td></td><td></td><td></td><td></td>`;
    tr.children[1].textContent = `${a.actor} (${a.role})`;
    tr.children[2].textContent = `${a.action}: ${a.resource}`;
    tr.children[3].textContent = a.purpose;
    tr.children[4].textContent = a.outcome;
    ab.appendChild(tr);
  }
})().catch(OT.fail);
