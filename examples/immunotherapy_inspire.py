"""Fit the checkpoint-inhibitor response model to INSPIRE (pembrolizumab) tumour sizes and show
how each patient's posterior separates responders from non-responders.

For each patient with >= 3 SLD measurements: calibrate `checkpoint_response`, then compute the
posterior probability that the model's SLD falls to <= 70% of baseline within a year (a RECIST
partial response), and compare it with the RECIST class of the patient's observed course.
This is an in-sample check (the posterior has seen the scans that define the RECIST class): it
shows that the model's parameters carry the response, not that it predicts it ahead of time.

Run: python examples/immunotherapy_inspire.py [--method laplace|nuts] [--patients N (0: all)]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats

from oncotwin import datasets
from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects, subjects_from
from oncotwin.models.immune import ResponseParams, classify_recist, sld

YEAR = np.linspace(0.0, 365.0, 120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="laplace")
    parser.add_argument("--patients", type=int, default=20, help="first N patients (0: all)")
    args = parser.parse_args()
    data = datasets.load("inspire-pembrolizumab")
    subjects = [s for s in subjects_from(data, kind="sld") if len(s.times) >= 3]
    if args.patients:
        subjects = subjects[: args.patients]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posts = calibrate_subjects("checkpoint_response", subjects, method=args.method, seed=0,
                                   chains=2, draws=500)  # fmt: skip
    rows = []
    for s, post in zip(subjects, posts, strict=True):
        p = {k: v.reshape(-1) for k, v in post.params.items()}
        curves = np.asarray(
            sld(
                YEAR[:, None], ResponseParams(p["v0"], p["kg"], p["kd"], p["tau"], p["kc"], p["fr"])
            )
        )
        p_response = float(np.mean(curves.min(axis=0) <= 0.7 * curves[0]))
        observed = classify_recist(s.times - s.t0, s.y).label
        delay = float(np.median(p["tau"]))
        rows.append((s.id, len(s.times), observed, p_response, delay, post.converged))
    print(f"{'patient':<12}{'scans':>6}  {'observed RECIST course':<24}{'P(response)':>12}"
          f"{'median delay, day':>19}")  # fmt: skip
    for ident, n, observed, prob, delay, ok in rows:
        flag = "" if ok else "  (not converged)"
        print(f"{ident:<12}{n:>6}  {observed:<24}{prob:>12.2f}{delay:>19.0f}{flag}")
    responded = np.array([r[2] in ("responder", "pseudoprogression") for r in rows])
    prob = np.array([r[3] for r in rows])
    print(f"\n{len(rows)} patients: {responded.sum()} observed responses (RECIST partial response)")
    for label, group in (("responders", prob[responded]), ("non-responders", prob[~responded])):
        if len(group):
            print(f"  mean posterior P(response), {label}: {group.mean():.2f} (n={len(group)})")
    if 0 < responded.sum() < len(rows):
        auc = stats.mannwhitneyu(prob[responded], prob[~responded]).statistic / (
            responded.sum() * (~responded).sum()
        )
        print(f"  separation (AUC of P(response) for observed response): {auc:.2f}")


if __name__ == "__main__":
    main()
