"""The patient report: measurements of label maps in patient millimetres (:mod:`procto.report.measure`), the
N category, and ``procto report`` (:func:`run_report`: one patient's scans → report.json, report.html, label maps
and DICOM-SEG; :mod:`procto.report.quality`, :mod:`procto.report.write`, :mod:`procto.report.dicom`).

>>> from procto.report import measure_tumour, measure_nodes, n_category
>>> n_category(2)
'N1'
"""

from procto.report.measure import measure_nodes, measure_tumour, n_category
from procto.report.pipeline import SCHEMA, run_report

__all__ = ["measure_tumour", "measure_nodes", "n_category", "run_report", "SCHEMA"]
