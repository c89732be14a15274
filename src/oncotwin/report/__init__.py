"""Reports: self-contained HTML pages (one per patient, one per cohort) and their figures.

This is the only part of oncotwin that plots. Pages need no network to view: figures are
inlined as base64 PNG, CSS is inline, there is no JavaScript. matplotlib is imported only when
a figure is drawn (Agg, no pyplot).

Example::

    from oncotwin.report import write_patient_report
    write_patient_report("P001.html", twin, {"current schedule": twin.forecast(times)})
"""

from .cohort import CohortEntry, cohort_report, write_cohort_report
from .format import fmt_day, fmt_interval, fmt_num, fmt_pct, pretty_unit
from .html import patient_filename
from .patient import patient_report, write_patient_report
from .plots import cohort_figure, figure_png, forecast_figure, posterior_figure
from .population import population_report, vpc_bands, write_population_report
from .recommendation import recommendation_section, write_recommendation_report

__all__ = [
    "CohortEntry",
    "cohort_figure",
    "cohort_report",
    "figure_png",
    "fmt_day",
    "fmt_interval",
    "fmt_num",
    "fmt_pct",
    "forecast_figure",
    "patient_filename",
    "patient_report",
    "population_report",
    "posterior_figure",
    "pretty_unit",
    "recommendation_section",
    "vpc_bands",
    "write_cohort_report",
    "write_patient_report",
    "write_population_report",
    "write_recommendation_report",
]
