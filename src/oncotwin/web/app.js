"use strict";
// Shared helpers of the dashboard: the access token lives in sessionStorage (closed with the tab).
const OT = {
  token() { return sessionStorage.getItem("oncotwin.token"); },
  async login(username, password) {
    const form = new URLSearchParams({ username, password });
    const r = await fetch("/api/auth/token", { method: "POST", body: form });
    if (!r.ok) throw new Error("Unknown user or wrong token.");
    const t = await r.json();
    sessionStorage.setItem("oncotwin.token", t.access_token);
  },
  logout() { sessionStorage.removeItem("oncotwin.token"); location.href = "index.html"; },
  async api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + OT.token() }, options.headers || {});
    if (options.body && typeof options.body !== "string") {
      options.body = JSON.stringify(options.body);
      headers["Content-Type"] = "application/json";
    }
    const r = await fetch(path, Object.assign({}, options, { headers }));
    if (r.status === 401) { OT.logout(); throw new Error("Please log in again."); }
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
    if (!r.ok) throw new Error((data && data.detail) || `request failed (${r.status})`);
    return data;
  },
  async me() {
    const me = await OT.api("/api/me");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
    const out = document.getElementById("logout");
    out.hidden = false;
    out.addEventListener("click", OT.logout);
    return me;
  },
  num(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "—";
    if (Math.abs(x) >= 1000 && Math.abs(x) < 1e7) return Math.round(x).toLocaleString("en");
    return Number(x).toPrecision(digits).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  },
  esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  },
  fail(e) {
    const box = document.createElement("p");
    box.className = "error";
    box.setAttribute("role", "alert");
    box.textContent = e.message || String(e);
    document.querySelector("main").prepend(box);
  },
};
