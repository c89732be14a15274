"""Load test of the clinical service on loopback: concurrent clinicians reading forecasts and
posting new observations against uvicorn, on SQLite (and PostgreSQL with --postgres URL).

Prints, per backend, the baseline (one client, same mix, same run) side by side with
`--clients` concurrent clients: requests, errors, throughput, p50/p95/max latency, and the
write check: every posted observation must be stored exactly once (none lost, none doubled).

    python benchmarks/service_load.py                      # 50 clients, 60 s, SQLite
    python benchmarks/service_load.py --seconds 10 --postgres postgresql+psycopg://...

The server runs in its own process (uvicorn, one worker); clients are asyncio + httpx in this
process. Machine load from other work inflates the latencies; say so when quoting them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import httpx
import numpy as np
import pandas as pd

N_PATIENTS = 10
READ_FRACTION = 0.8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(url: str) -> dict[str, str]:
    """Users, a team, patients with calibrated twins (MAP + Laplace) and stored forecasts."""
    from oncotwin import workflow
    from oncotwin.store import Store
    from oncotwin.store.security import Security

    with Store(url) as store:
        sec = Security(store)
        sec.add_team("ward")
        tokens = {f"clin{i}": sec.add_user(f"clin{i}", "clinician", ["ward"])[1] for i in range(5)}
        t = np.array([0.0, 3, 7, 10, 14, 17, 21])
        for i in range(N_PATIENTS):
            pid = f"L{i:02d}"
            sec.create_patient(pid, "ward")
            y = 100 * np.exp((0.05 + 0.005 * i) * t)
            store.ingest(pd.DataFrame({"id": pid, "time": t, "evid": 0, "dv": y,
                                       "kind": "volume", "unit": "mm3"}), source="bench")  # fmt: skip
            sec.record_consent(pid, "care", True, recorded_by="bench")
            twin_rec, _ = workflow.create_twin(store, pid, method="laplace", draws=200)
            twin, rec = workflow.load_twin(store, pid)
            until = workflow.horizon(twin)
            for sc in workflow.scenarios(twin, until):
                workflow.forecast_and_save(store, twin, rec, sc, until)
    return tokens


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    posted: list[tuple[str, float, float]] = field(default_factory=list)
    n_reads: int = 0
    n_writes: int = 0


async def client(base: str, token: str, seconds: float, counter: itertools.count, rng_seed: int,
                 out: Result) -> None:  # fmt: skip
    rng = np.random.default_rng(rng_seed)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60.0) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pid = f"L{int(rng.integers(N_PATIENTS)):02d}"
            t0 = time.perf_counter()
            try:
                if rng.random() < READ_FRACTION:
                    r = await http.get(f"/api/patients/{pid}/forecasts")
                    out.n_reads += 1
                else:
                    k = next(counter)
                    obs = (pid, 30.0 + k * 1e-3, 1000.0 + k)  # unique: each stored once
                    r = await http.post(f"/api/patients/{pid}/events", json={"events": [
                        {"time": obs[1], "dv": obs[2], "kind": "volume", "unit": "mm3"}]})  # fmt: skip
                    out.n_writes += 1
                    if r.status_code == 201:
                        out.posted.append(obs)
                if r.status_code >= 400:
                    out.errors.append(f"{r.status_code} {r.text[:120]}")
            except httpx.HTTPError as exc:
                out.errors.append(type(exc).__name__)
            out.latencies.append(time.perf_counter() - t0)


def check_writes(url: str, posted: list[tuple[str, float, float]]) -> tuple[int, int, int]:
    """(posted, stored exactly once, lost or doubled) over every posted observation."""
    from oncotwin.store import Store

    with Store(url) as store:
        ev = store.events_all([f"L{i:02d}" for i in range(N_PATIENTS)])
    counts = ev[ev["time"] >= 30.0].groupby(["id", "time", "dv"]).size()
    stored = {(str(i), float(t), float(d)): int(n) for (i, t, d), n in counts.items()}
    once = sum(stored.get(p, 0) == 1 for p in posted)
    extra = sum(n for n in stored.values()) - once  # rows that no 201 accounts for, or copies
    return len(posted), once, len(posted) - once + extra


def run_backend(name: str, url: str, clients: int, seconds: float) -> None:
    tokens = setup(url)
    port = _free_port()
    env = dict(os.environ, ONCOTWIN_DB=url, ONCOTWIN_SECRET_KEY=uuid.uuid4().hex)
    code = ("import uvicorn; from oncotwin.service import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, access_log=False, "
            "log_level='warning')")  # fmt: skip
    server = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        # Warm-up (not measured): every token verified once (scrypt), connections opened.
        for tok in tokens.values():
            for i in range(N_PATIENTS):
                httpx.get(f"{base}/api/patients/L{i:02d}/forecasts", timeout=60,
                          headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
        counter = itertools.count()
        rows = []
        for label, n, secs in (("baseline: 1 client", 1, min(10.0, seconds)),
                               (f"{clients} clients", clients, seconds)):  # fmt: skip
            out = Result()

            async def main(n: int = n, secs: float = secs, out: Result = out) -> None:
                toks = list(tokens.values())
                await asyncio.gather(*(client(base, toks[i % len(toks)], secs, counter, i, out)
                                       for i in range(n)))  # fmt: skip

            t0 = time.perf_counter()
            asyncio.run(main())
            wall = time.perf_counter() - t0
            lat = np.array(out.latencies) * 1000
            rows.append((label, len(lat), out.n_reads, out.n_writes, len(out.errors),
                         len(lat) / wall, *np.percentile(lat, [50, 95]), lat.max(), out))  # fmt: skip
        posted = [p for r in rows for p in r[-1].posted]
        n_posted, once, bad = check_writes(url, posted)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\n== {name}: {url.split('?')[0]}")
    print(f"{'run':<22}{'requests':>9}{'reads':>7}{'writes':>7}{'errors':>7}{'req/s':>8}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}")  # fmt: skip
    for label, n, nr, nw, ne, rps, p50, p95, mx, out in rows:
        print(f"{label:<22}{n:>9}{nr:>7}{nw:>7}{ne:>7}{rps:>8.1f}{p50:>8.1f}{p95:>8.1f}"
              f"{mx:>8.0f}")  # fmt: skip
        for e in sorted(set(out.errors))[:5]:
            print(f"   error: {e}")
    print(f"writes: {n_posted} observations posted, {once} stored exactly once, "
          f"{bad} lost or duplicated")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--postgres", default=os.environ.get("ONCOTWIN_TEST_POSTGRES_URL"),
                    help="PostgreSQL URL (a fresh schema is made in it); default: none")  # fmt: skip
    ap.add_argument("--method", default="laplace", help="ignored (examples convention)")
    args = ap.parse_args()
    print(f"service load: {args.clients} concurrent clients, {args.seconds:.0f} s, "
          f"{READ_FRACTION:.0%} forecast reads / {1 - READ_FRACTION:.0%} observation posts, "
          f"{N_PATIENTS} patients; cpu count {os.cpu_count()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        run_backend("SQLite", f"sqlite:///{folder}/load.db", args.clients, args.seconds)
    if args.postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        schema = f"oncotwin_load_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            run_backend("PostgreSQL", url.render_as_string(hide_password=False), args.clients,
                        args.seconds)  # fmt: skip
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
