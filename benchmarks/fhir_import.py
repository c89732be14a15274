"""FHIR R4 Bundle import speed (no target in the issue; figures for BENCHMARKS.md).

Measured (warm: after one call that imports the modules; median of repeats):
- the 2-patient mCODE-style test Bundle (tests/data/fhir/mcode_two_patients.json)
- the same Bundle replicated to COPIES x 2 patients (ids and references renamed per copy)
- baseline: `oncotwin.read_events` of the equivalent CSV event table (same 2 patients)

Usage: python benchmarks/fhir_import.py [--copies 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

from oncotwin.data.fhir import import_bundle
from oncotwin.data.io import read_events

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "fhir"
SHARED = {"Medication"}  # resources every copy refers to (kept once)


def timed(fn, repeats: int) -> tuple[float, Any]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _rename(node: Any, suffix: str) -> Any:
    """References "Type/id" of non-shared resources get `suffix` appended to the id."""
    if isinstance(node, dict):
        out = {k: _rename(v, suffix) for k, v in node.items()}
        ref = node.get("reference")
        if isinstance(ref, str) and "/" in ref and ref.split("/")[-2] not in SHARED:
            out["reference"] = ref + suffix
        return out
    if isinstance(node, list):
        return [_rename(v, suffix) for v in node]
    return node


def replicated(bundle: dict[str, Any], copies: int) -> dict[str, Any]:
    """`bundle` with its patients repeated `copies` times under new ids."""
    shared = [e for e in bundle["entry"] if e["resource"]["resourceType"] in SHARED]
    entries = list(shared)
    for k in range(copies):
        for e in bundle["entry"]:
            if e["resource"]["resourceType"] in SHARED:
                continue
            e = _rename(copy.deepcopy(e), f"-r{k}")
            e["resource"]["id"] += f"-r{k}"
            e["fullUrl"] += f"-r{k}"
            entries.append(e)
    return {**bundle, "entry": entries}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bundle = json.loads((FIXTURES / "mcode_two_patients.json").read_text())
    big = replicated(bundle, args.copies)
    start = time.perf_counter()
    import_bundle(bundle)
    print(f"first import (module imports included): {time.perf_counter() - start:.2f} s")
    rows = []
    for label, b in (("test Bundle", bundle), (f"x{args.copies}", big)):
        secs, res = timed(lambda b=b: import_bundle(b), args.repeats)
        rows.append((f"{label}: {len(b['entry'])} entries, {len(res.data.ids)} patients", secs))
    secs, data = timed(lambda: read_events(FIXTURES / "mcode_two_patients.csv"), args.repeats)
    rows.append((f"baseline read_events of the equivalent CSV ({len(data.ids)} patients)", secs))
    for label, s in rows:
        print(f"{label:<62} {s:8.3f} s")


if __name__ == "__main__":
    main()
