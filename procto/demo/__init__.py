"""``procto demo``: the whole pipeline on the embedded default (synthetic phantoms; nothing to download).

1. the demo's bundles (:mod:`procto.demo.bundles`): RCSegNeXt-B (MRI rectum + tumour, through nnU-Net v2), the
   staging CNN (T2/T3) and CoSAM (CT lymph nodes), each the smallest faithful version of the model, trained briefly
   on phantom cohorts and installed under ``$PROCTO_HOME`` — once: a second demo reuses them
   (``demo-rcsegnext``, ``demo-staging``, ``demo-cosam``; ``-full`` / ``-smoke`` for the other schedules);
2. one phantom patient (:mod:`procto.demo.patient`): a sagittal T2 MRI and a contrast CT of the same anatomy with a
   known T stage and known metastatic and benign nodes, written as DICOM series with a fake identity;
3. ``procto report`` on them (:func:`procto.report.run_report`: report.json, report.html, label maps, DICOM-SEG);
4. the report's findings printed beside the phantom's truth (:mod:`procto.demo.run`).

>>> from procto.demo import run_demo
>>> result = run_demo("procto_demo_out")                      # doctest: +SKIP
>>> result.rows                                                # doctest: +SKIP
[('T stage', 'T3', 'T3'), ('P(T3)', '0.71', '—'), ...]

Schedules (:data:`SCHEDULES`): ``default`` — RCSegNeXt-B 8 phantoms × 8 epochs × 16 iterations, staging 48
phantoms × (16 slice-level + 4 volume-level) epochs on 48-px tumour crops, CoSAM (128-px input) 6 CT phantoms × 120
detector + 40 joint steps; ``full`` (``full=True``) trains longer; ``smoke`` only makes valid bundles (tests).
Measured 2026-12-02 on the 2-core CPU VM with another job using about one core (load average 2.1–2.3, so one
training thread): first run 320 s (training 299 s, patient 1 s, report 20 s), second run 27 s (report 24 s).
On that run RCSegNeXt's tumour Dice was 0.43 on 6 held-out phantoms (rectum 0.52), the staging CNN's AUC 0.86 on
20 held-out phantoms (true labels); CoSAM at this length produces node maps but does not yet find the phantom's
nodes reliably (``full`` trains it as benchmarks/cosam_train_bench.py does).  AG-CRC is not trained: the report
skips its step.
Measured again 2026-12-02 15:00 UTC on a slower 2-core VM (the test suite ran 2.5× slower there than on CI; one
training thread, load average 1.0–1.5): first run 571 s (training: RCSegNeXt 244 s, staging 84 s, CoSAM 194 s;
report 40 s); on that run the findings were T2 (truth T3, P(T3) 0.41) and 357 node candidates (truth 2), which the
report's quality section flags as implausible.  The issue's target (first run < 3 min on 2 idle cores, findings
near the truth) is not met yet.
"""

from procto.demo.bundles import SCHEDULES, DemoSchedule, bundle_names, train_demo_bundles
from procto.demo.patient import DemoPatient, demo_patient, write_demo_patient
from procto.demo.run import DemoResult, run_demo, table_rows

__all__ = ["SCHEDULES", "DemoSchedule", "DemoPatient", "DemoResult", "bundle_names", "demo_patient", "run_demo",
           "table_rows", "train_demo_bundles", "write_demo_patient"]
