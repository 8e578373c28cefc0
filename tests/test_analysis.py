"""Pairwise table, rank stability, Figures 8 and 9 and the CSV/MD/TeX tables, on generated runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from imagenot import aggregate as A
from imagenot import analysis as AN
from imagenot import cli
from imagenot import stats as S
from imagenot.io import InputError
from imagenot.tables import to_latex, to_markdown, write_table
from test_aggregate import MODELS, PARAMS, REFERENCE, metrics_files, prediction_files, write_reference, write_run


def run_cli(*argv: str) -> int:
    return cli.main(["aggregate", *argv])


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """imagenot and cifar10 x 5 models x 2 seeds; on cifar10 resnet18 and mobilenet swap places."""
    root = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(1)
    acc = {"imagenot": {"alexnet": 0.30, "mobilenet_v3_small": 0.42, "resnet18": 0.47, "densenet121": 0.55,
                        "convnext_tiny": 0.66},
           "cifar10": {"alexnet": 0.60, "mobilenet_v3_small": 0.76, "resnet18": 0.74, "densenet121": 0.84,
                       "convnext_tiny": 0.91}}
    n = {"imagenot": 400, "cifar10": 300}
    for ds, models in acc.items():
        labels = rng.integers(0, 10, n[ds])
        for m, p in models.items():
            for seed in (0, 1):
                write_run(root, ds, m, seed, rng.random(n[ds]) < p, labels)
    write_reference(root / "reference.csv")
    out = root / "tables" / "accuracies.csv"
    assert run_cli("accuracies", "--metrics", *metrics_files(root), "--out", str(out)) == 0
    return root


def robustness_files(root: Path, drop: float = 0.8, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    files = []
    for p in sorted(root.glob("eval/*/*/*/metrics.json")):
        m = json.loads(p.read_text())
        aug = {f"aug{i:02d}": float(np.clip(m["top1"] * drop + rng.normal(0, 0.01), 0, 1)) for i in range(17)}
        out = p.parent / "robustness.json"
        out.write_text(json.dumps({"model": m["model"], "dataset": m["dataset"], "seed": m["seed"],
                                   "n_test": m["n_test"], "clean_top1": m["top1"], "augmentations": aug,
                                   "mean_top1": float(np.mean(list(aug.values())))}))
        files.append(str(out))
    return files


def transfer_files(root: Path, mode: str, slope: float = 0.3) -> list[str]:
    """CIFAR-10 accuracy = 0.6 + slope * pretraining accuracy (+ a little noise), 1000 test images."""
    rng = np.random.default_rng(2)
    files = []
    for p in sorted(root.glob("eval/imagenot/*/*/metrics.json")):
        m = json.loads(p.read_text())
        top1 = round(0.6 + slope * m["top1"] + rng.normal(0, 0.002), 3)
        d = root / "transfer" / "imagenot" / m["model"] / f"seed{m['seed']}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"{mode}.json"
        f.write_text(json.dumps({"model": m["model"], "dataset": "imagenot", "seed": m["seed"], "mode": mode,
                                 "target": "cifar10", "top1": top1, "n_test": 1000, "pretrain_top1": m["top1"],
                                 "best": {"lr": 0.01}, "trials": [{"lr": 0.01, "val_top1": top1}]}))
        files.append(str(f))
    return files


# --------------------------------------------------------------------------- tables


def test_tables_written_three_ways(tmp_path):
    df = pd.DataFrame({"model": ["a_1", "b"], "rho": [0.91234, float("nan")], "n": [3, 4], "ok": [True, False]})
    write_table(df, tmp_path / "t.csv", caption="A & B")
    assert pd.read_csv(tmp_path / "t.csv")["rho"].iloc[0] == pytest.approx(0.91234)
    md = (tmp_path / "t.md").read_text()
    assert "| a_1 | 0.912 | 3 | yes |" in md and "| b | — | 4 | no |" in md and md.startswith("A & B")
    tex = (tmp_path / "t.tex").read_text()
    assert r"a\_1 & 0.912 & 3 & yes \\" in tex and r"\caption{A \& B}" in tex and r"b & -- & 4 & no \\" in tex
    assert to_markdown(df) == to_markdown(df) and to_latex(df).count(r"\toprule") == 1


def test_accuracies_and_rank_agreement_write_md_and_tex(grid):
    for name in ("accuracies",):
        for ext in ("csv", "md", "tex"):
            assert (grid / "tables" / f"{name}.{ext}").stat().st_size > 100
    out = grid / "tables" / "rank_agreement.csv"
    assert run_cli("rank-agreement", "--accuracies", str(grid / "tables/accuracies.csv"), "--reference",
                   str(grid / "reference.csv"), "--predictions", *prediction_files(grid), "--params",
                   json.dumps(PARAMS), "--out", str(out)) == 0
    df = pd.read_csv(out)
    assert set(A.SEED_COLUMNS) <= set(df.columns)
    row = df[(df["reference"] == "imagenet") & (df["dataset"] == "cifar10")].iloc[0]
    assert row["n_seeds"] == 2
    # the across-seed columns are the statistic per seed, averaged
    runs = pd.read_csv(grid / "tables/accuracies.csv")
    models = row["models"].split(";")
    ref = np.array([REFERENCE[m][2] for m in models])
    rhos = [st.spearmanr(ref, runs[(runs.dataset == "cifar10") & (runs.seed == s)].set_index("model").loc[models, "top1"]
                         ).statistic for s in (0, 1)]
    assert row["seed_spearman_mean"] == pytest.approx(np.mean(rhos))
    assert "seed" in (grid / "tables/rank_agreement.md").read_text()
    assert r"\begin{tabular}" in (grid / "tables/rank_agreement.tex").read_text()


# --------------------------------------------------------------------------- pairwise


def test_pairwise_flags_the_swap_and_matches_mcnemar(grid):
    out = grid / "tables" / "pairwise.csv"
    assert run_cli("pairwise", "--accuracies", str(grid / "tables/accuracies.csv"), "--reference",
                   str(grid / "reference.csv"), "--predictions", *prediction_files(grid), "--params",
                   json.dumps(PARAMS), "--out", str(out)) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == A.PAIRWISE_COLUMNS
    for ext in ("md", "tex"):
        assert (grid / "tables" / f"pairwise.{ext}").is_file()
    imn = df[df["dataset"] == "imagenot"]
    # four adjacent pairs in reference order, none swapped; big gaps are significant
    assert len(imn) == 4 and not imn["swapped"].any() and imn["adjacent"].all()
    assert list(imn["reference_rank_a"]) == [1, 2, 3, 4]
    cif = df[df["dataset"] == "cifar10"].set_index(["model_a", "model_b"])
    swap = cif.loc[("resnet18", "mobilenet_v3_small")]
    assert bool(swap["swapped"]) and swap["top1_a"] < swap["top1_b"]
    assert swap["verdict"] in ("swap within noise", "significant swap")
    # the test itself: pooled exact McNemar over the two seeds
    ca, cb = [], []
    for s in (0, 1):
        pa = pd.read_parquet(grid / f"eval/cifar10/resnet18/seed{s}/predictions.parquet").sort_values("key")
        pb = pd.read_parquet(grid / f"eval/cifar10/mobilenet_v3_small/seed{s}/predictions.parquet").sort_values("key")
        ca.append(pa["correct"].to_numpy())
        cb.append(pb["correct"].to_numpy())
    b = sum(int(np.sum(x & ~y)) for x, y in zip(ca, cb))
    c = sum(int(np.sum(~x & y)) for x, y in zip(ca, cb))
    assert (swap["b"], swap["c"]) == (b, c)
    assert swap["p_value"] == pytest.approx(st.binomtest(b, b + c, 0.5).pvalue)
    assert (cif["p_holm"] >= cif["p_value"] - 1e-12).all()


# --------------------------------------------------------------------------- rank stability


def test_rank_stability_cli_writes_table_and_figure(grid):
    out = grid / "tables" / "rank_stability.csv"
    png, pdf = grid / "figures/rs.png", grid / "figures/rs.pdf"
    params = {**PARAMS, "rank_stability_replicates": 60, "rank_stability_points": 6}
    assert run_cli("rank-stability", "--accuracies", str(grid / "tables/accuracies.csv"), "--predictions",
                   *prediction_files(grid), "--params", json.dumps(params), "--out", str(out),
                   "--out-png", str(png), "--out-pdf", str(pdf)) == 0
    df = pd.read_csv(out)
    assert set(df["dataset"]) == {"imagenot", "cifar10"}
    last = df.groupby("dataset").last()
    assert (last["p_recovered"] == 1.0).all() and (last["n_test"] == last["n_test_full"]).all()
    assert (df.groupby("dataset")["n_test"].count() == 6).all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-"


# --------------------------------------------------------------------------- figure 9


def test_fig9_with_robustness_and_cifar_panel(grid):
    rob = robustness_files(grid)
    png, pdf = grid / "figures/fig9.png", grid / "figures/fig9.pdf"
    assert run_cli("fig9", "--accuracies", str(grid / "tables/accuracies.csv"), "--reference",
                   str(grid / "reference.csv"), "--robustness", *rob, "--panel-datasets", "cifar10",
                   "--models", json.dumps(MODELS), "--params", json.dumps(PARAMS),
                   "--out-png", str(png), "--out-pdf", str(pdf)) == 0
    assert png.stat().st_size > 20_000 and pdf.read_bytes()[:5] == b"%PDF-"
    runs = A.read_accuracies(grid / "tables/accuracies.csv")
    data = AN.figure9_data(runs, A.read_reference(grid / "reference.csv"), AN.read_robustness(rob), MODELS,
                           "alexnet", ["cifar10"])
    titles = [t for t, _ in data["panels"]]
    assert titles[0] == "Clean test set" and titles[1].startswith("Robust") and titles[2].startswith("CIFAR-10")
    robust = data["panels"][1][1][0]["values"]
    r = AN.read_robustness(rob)
    mean = r[r.dataset == "imagenot"].groupby("model")["mean_top1"].mean()
    assert robust.loc["resnet18", "rel"] == pytest.approx(mean["resnet18"] / mean["alexnet"])
    assert robust.loc["alexnet", "rel"] == pytest.approx(1.0)
    assert data["order"][0] == "alexnet" and data["order"][-1] == "convnext_tiny"


def test_fig9_leaves_out_robust_series_when_the_baseline_scores_zero(grid, caplog):
    rob = AN.read_robustness(robustness_files(grid))
    zero = rob["model"] == "alexnet"
    rob.loc[zero, "mean_top1"] = 0.0
    runs = A.read_accuracies(grid / "tables/accuracies.csv")
    with caplog.at_level("WARNING"):
        data = AN.figure9_data(runs, A.read_reference(grid / "reference.csv"), rob, MODELS, "alexnet", ["cifar10"])
    titles = [t for t, _ in data["panels"]]
    assert not any(t.startswith("Robust") for t in titles)
    assert "has mean_top1 = 0" in caplog.text


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.pop("mean_top1"), "missing field 'mean_top1'"),
    (lambda o: o.update(mean_top1=0.99), "is not the mean of 'augmentations'"),
    (lambda o: o["augmentations"].update(aug00=42.0), "'augmentations.aug00' = 42.0 is outside [0, 1]"),
    (lambda o: o.update(seed="zero"), "field 'seed' must be an integer"),
])
def test_robustness_reader_names_file_and_field(tmp_path, edit, message):
    obj = {"model": "alexnet", "dataset": "imagenot", "seed": 0, "n_test": 10, "clean_top1": 0.5,
           "augmentations": {"aug00": 0.4, "aug01": 0.2}, "mean_top1": 0.3}
    edit(obj)
    p = tmp_path / "robustness.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(InputError) as e:
        AN.read_robustness([p])
    assert str(p) in str(e.value) and message in str(e.value)


# --------------------------------------------------------------------------- figure 8


@pytest.mark.parametrize("mode, letter", [("finetune", "a"), ("linear", "b")])
def test_fig8_fit_recovers_the_slope(grid, mode, letter):
    files = transfer_files(grid, mode, slope=0.3)
    png, pdf = grid / f"figures/fig8{letter}.png", grid / f"figures/fig8{letter}.pdf"
    assert run_cli("fig8", "--mode", mode, "--transfer", *files, "--models", json.dumps(MODELS), "--params",
                   json.dumps(PARAMS), "--out-png", str(png), "--out-pdf", str(pdf)) == 0
    assert png.stat().st_size > 10_000 and pdf.read_bytes()[:5] == b"%PDF-"
    data = AN.figure8_data(AN.read_transfer(files, mode), MODELS, n_bootstrap=500)
    fit = data["series"]["imagenot"]["fit"]
    t = data["series"]["imagenot"]["table"]
    lr = st.linregress(t["pretrain_top1"], t["top1"])
    assert fit["slope"] == pytest.approx(lr.slope) and fit["pearson_r"] == pytest.approx(lr.rvalue)
    assert fit["slope"] == pytest.approx(0.3, abs=0.05)
    assert fit["slope_low"] <= fit["slope"] <= fit["slope_high"]
    assert np.all(fit["band_low"] <= fit["band_high"])


def test_fig8_rejects_the_wrong_mode_and_mixed_targets(grid, tmp_path):
    files = transfer_files(grid, "finetune")
    with pytest.raises(InputError, match="field 'mode' is 'finetune', expected 'linear'"):
        AN.read_transfer(files, "linear")
    obj = json.loads(Path(files[0]).read_text())
    obj.update(target="cifar100", seed=7)
    other = tmp_path / "finetune.json"
    other.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="several targets"):
        AN.read_transfer(files + [str(other)], "finetune")
    obj.update(target="cifar10", top1=85.0)
    other.write_text(json.dumps(obj))
    with pytest.raises(InputError, match=r"'top1' = 85.0 is outside \[0, 1\]"):
        AN.read_transfer([str(other)], "finetune")


def test_seed_summary_single_seed_uses_clopper_pearson():
    df = pd.DataFrame({"dataset": ["d"], "model": ["m"], "seed": [0], "top1": [0.25], "n_test": [40]})
    out = AN.seed_summary(df, "top1", n_test="n_test").iloc[0]
    assert (out["top1_low"], out["top1_high"]) == pytest.approx(S.clopper_pearson(10, 40))
    assert out["interval"] == "binomial"
