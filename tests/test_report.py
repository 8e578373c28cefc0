"""`snakemake --report`: every table and figure target of the analysis, with its caption.

The outputs are produced by the same `imagenot aggregate` commands the rules call (in
process, on generated runs), then Snakemake builds the report from them with only the
analysis rules allowed, so no training runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from imagenot import cli
from test_aggregate import MODELS, REFERENCE, write_reference, write_run

ROOT = Path(__file__).resolve().parents[1]
RULES = ["accuracies", "rank_agreement", "pairwise", "fig_rank_stability", "fig1"]


def test_report_has_every_analysis_output_with_caption(tmp_path):
    res = tmp_path / "results"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    for m, (_, _, ref) in REFERENCE.items():
        write_run(res, "imagenot", m, 0, rng.random(200) < 0.3 + (ref - 0.56) * 1.5, labels)
    (res / "tables").mkdir(parents=True)
    write_reference(res / "tables/reference_accuracies.csv")
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["models"] = {m: v for m, v in cfg["models"].items() if m in REFERENCE}
    cfg["analysis"].update(n_bootstrap=100, rank_stability_replicates=20, rank_stability_points=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))

    metrics = sorted(str(p) for p in res.glob("eval/*/*/*/metrics.json"))
    preds = sorted(str(p) for p in res.glob("eval/*/*/*/predictions.parquet"))
    t, f = res / "tables", res / "figures"
    params = json.dumps(cfg["analysis"])
    common = ["--accuracies", str(t / "accuracies.csv")]
    ref = ["--reference", str(t / "reference_accuracies.csv")]
    for argv in (
        ["accuracies", "--metrics", *metrics, "--out", str(t / "accuracies.csv")],
        ["rank-agreement", *common, *ref, "--predictions", *preds, "--params", params, "--out",
         str(t / "rank_agreement.csv")],
        ["pairwise", *common, *ref, "--predictions", *preds, "--params", params, "--out", str(t / "pairwise.csv")],
        ["rank-stability", *common, "--predictions", *preds, "--params", params, "--out", str(t / "rank_stability.csv"),
         "--out-png", str(f / "fig_rank_stability.png"), "--out-pdf", str(f / "fig_rank_stability.pdf")],
        ["fig1", *common, *ref, "--models", json.dumps(MODELS), "--params", params,
         "--out-png", str(f / "fig1_relative_improvement.png"), "--out-pdf", str(f / "fig1_relative_improvement.pdf")],
    ):
        assert cli.main(["aggregate", *argv]) == 0, argv

    # the report of the analysis targets, as after `snakemake accuracies rank_agreement ...`
    r = subprocess.run([sys.executable, "-m", "snakemake", *RULES, "--snakefile", str(ROOT / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(tmp_path / "cfg.yaml"), "--allowed-rules", *RULES,
                        "--report", str(tmp_path / "report.html")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    for name in ("accuracies.csv", "rank_agreement.csv", "pairwise.csv", "rank_stability.csv",
                 "fig_rank_stability.png", "fig1_relative_improvement.png"):
        assert name in html, name
    for caption in ("Which rank swaps against the reference are within noise", "Rank stability: probability",
                    "Figure 1: model ranking", "Two separate intervals", "ImageNot: does a deliberately"):
        assert caption in html, caption
