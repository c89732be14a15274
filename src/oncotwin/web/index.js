"use strict";
(async function () {
  const login = document.getElementById("login");
  if (!OT.token()) {
    login.hidden = false;
    document.getElementById("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = document.getElementById("login-error");
      err.textContent = "";
      try {
        await OT.login(document.getElementById("username").value,
                       document.getElementById("password").value);
        location.reload();
      } catch (e) { err.textContent = e.message; }
    });
    return;
  }
  const me = await OT.me();
  if (me.role !== "clinician") {
    const box = document.getElementById("elsewhere");
    box.hidden = false;
    const links = document.getElementById("elsewhere-links");
    if (me.role === "researcher") {
      document.getElementById("elsewhere-text").textContent =
        "As a researcher you see pseudonymised data of patients who consented to research use.";
      links.innerHTML = '<li><a href="cohort.html">Cohort</a></li>';
    } else {
      document.getElementById("elsewhere-text").textContent =
        "As an administrator you manage users and teams and read the audit log.";
      links.innerHTML = '<li><a href="audit.html">Audit log</a></li>';
    }
    return;
  }
  document.getElementById("patients").hidden = false;
  const rows = await OT.api("/api/patients");
  const body = document.querySelector("#patient-table tbody");
  for (const p of rows) {
    const tr = document.createElement("tr");
    const twin = p.twin_version === null ? "none yet"
      : `v${p.twin_version} (${p.twin_model})` + (p.twin_converged ? "" : " ⚠ not converged");
    const span = p.first_time === null ? "—" : `${OT.num(p.first_time)} to ${OT.num(p.last_time)}`;
    tr.innerHTML = `<th scope="row"><a href="patient.html?id=${encodeURIComponent(p.id)}"></a></th>` +
      `<td>${p.n_observations}</td><td>${p.n_doses}</td><td>${span}</td>` +
      `<td class="${p.twin_converged === false ? "warn" : ""}"></td>` +
      `<td class="${p.n_surprises ? "warn" : ""}">${p.n_surprises}</td>`;
    tr.querySelector("a").textContent = p.id;
    tr.children[4].textContent = twin;
    body.appendChild(tr);
  }
  document.getElementById("patients-status").textContent =
    `${rows.length} patient(s) in the care of ${me.teams.join(", ")}.`;
})().catch(OT.fail);
