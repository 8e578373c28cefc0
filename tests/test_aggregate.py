"""`imagenot aggregate`: accuracies, rank-agreement and fig1, end to end on generated runs."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagenot import aggregate as A
from imagenot import cli
from imagenot import stats as S
from imagenot.io import InputError

# ImageNet-1k acc@1 of the torchvision weights in config/config.yaml (as `imagenot reference` writes them)
REFERENCE = {
    "alexnet": ("AlexNet", "AlexNet_Weights.IMAGENET1K_V1", 0.56522),
    "mobilenet_v3_small": ("MobileNetV3-S", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 0.67668),
    "resnet18": ("ResNet-18", "ResNet18_Weights.IMAGENET1K_V1", 0.69758),
    "densenet121": ("DenseNet-121", "DenseNet121_Weights.IMAGENET1K_V1", 0.74434),
    "convnext_tiny": ("ConvNeXt-T", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 0.82520),
}
MODELS = {m: {"display_name": d, "reference_weights": w} for m, (d, w, _) in REFERENCE.items()}
PARAMS = {"baseline_model": "alexnet", "n_bootstrap": 200, "confidence": 0.95}


def run_cli(*argv: str) -> int:
    return cli.main(["aggregate", *argv])


def write_run(root: Path, dataset: str, model: str, seed: int, correct: np.ndarray, labels: np.ndarray,
              keys=None) -> Path:
    d = root / "eval" / dataset / model / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    n = len(correct)
    keys = keys if keys is not None else [f"{i:06d}" for i in range(n)]
    pred = np.where(correct, labels, (labels + 1) % 10)
    pd.DataFrame({
        "key": pd.Series(keys, dtype="string"), "label": labels.astype("int64"), "pred": pred.astype("int64"),
        "correct": correct.astype(bool), "correct_top5": correct.astype(bool), "confidence": np.full(n, 0.5),
    }).to_parquet(d / "predictions.parquet", index=False)
    k = int(correct.sum())
    low, high = S.clopper_pearson(k, n)
    (d / "metrics.json").write_text(json.dumps({
        "model": model, "dataset": dataset, "seed": seed, "top1": k / n, "top1_low": low, "top1_high": high,
        "top5": min(1.0, k / n + 0.2), "n_test": n, "corrupt_samples_skipped": 0,
    }))
    return d


def write_reference(path: Path, models=REFERENCE) -> Path:
    pd.DataFrame(
        [{"model": m, "display_name": d, "reference": w, "top1": t} for m, (d, w, t) in models.items()]
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def runs(tmp_path):
    """Two datasets x 5 models x 2 seeds, accuracies increasing with the reference."""
    rng = np.random.default_rng(0)
    n = {"imagenot": 240, "other": 160}
    for dataset, base in (("imagenot", 0.35), ("other", 0.6)):
        labels = rng.integers(0, 10, n[dataset])
        for m, (_, _, ref) in REFERENCE.items():
            for seed in (0, 1):
                p = base + (ref - 0.56) * 1.2
                write_run(tmp_path, dataset, m, seed, rng.random(n[dataset]) < p, labels)
    write_reference(tmp_path / "reference.csv")
    return tmp_path


def metrics_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("eval/*/*/*/metrics.json"))


def prediction_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("eval/*/*/*/predictions.parquet"))


def make_accuracies(root: Path) -> Path:
    out = root / "tables" / "accuracies.csv"
    assert run_cli("accuracies", "--metrics", *metrics_files(root), "--out", str(out)) == 0
    return out


# --------------------------------------------------------------------------- accuracies


def test_accuracies_table(runs):
    out = make_accuracies(runs)
    df = pd.read_csv(out)
    assert list(df.columns) == ["model", "dataset", "seed", "top1", "top1_low", "top1_high", "top5", "n_test"]
    assert len(df) == 2 * 5 * 2
    assert list(df.itertuples(index=False, name=None)) == sorted(
        df.itertuples(index=False, name=None), key=lambda r: (r[1], r[0], r[2]))
    m = json.loads((runs / "eval/imagenot/resnet18/seed1/metrics.json").read_text())
    row = df[(df.dataset == "imagenot") & (df.model == "resnet18") & (df.seed == 1)].iloc[0]
    assert row["top1"] == pytest.approx(m["top1"]) and row["n_test"] == 240
    assert not list(out.parent.glob(".*tmp*"))  # atomic: no temporary left behind
    # the reader accepts what the writer wrote
    pd.testing.assert_frame_equal(A.read_accuracies(out), A.collect_accuracies(metrics_files(runs)),
                                  check_dtype=False)


def _edit_metrics(path: Path, **changes):
    m = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    path.write_text(json.dumps(m))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"top1_high": None}, "missing field 'top1_high'"),
        ({"top1": 1.5, "top1_high": 1.6}, "'top1' = 1.5 is outside [0, 1]"),
        ({"top1": 57.0}, "'top1' = 57.0 is outside [0, 1]"),
        ({"seed": "zero"}, "'seed' must be an integer"),
        ({"n_test": 0}, "'n_test' must be a positive integer"),
        ({"top1_low": 0.99}, "is not inside [top1_low, top1_high]"),
    ],
)
def test_accuracies_bad_metrics_name_file_and_field(runs, capsys, change, message):
    bad = runs / "eval/imagenot/resnet18/seed0/metrics.json"
    _edit_metrics(bad, **change)
    rc = run_cli("accuracies", "--metrics", *metrics_files(runs), "--out", str(runs / "acc.csv"))
    err = capsys.readouterr().err
    assert rc == 2
    assert str(bad) in err and message in err
    assert not (runs / "acc.csv").exists()


def test_accuracies_rejects_invalid_json_and_duplicate_runs(runs):
    bad = runs / "eval/imagenot/resnet18/seed0/metrics.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        A.read_metrics(bad)
    files = metrics_files(runs)
    files.remove(str(bad))
    copy = runs / "copy.json"
    copy.write_text((runs / "eval/imagenot/alexnet/seed0/metrics.json").read_text())
    with pytest.raises(InputError, match="run dataset=imagenot model=alexnet seed=0 is also in"):
        A.collect_accuracies(files + [str(copy)])


def test_read_accuracies_checks_columns_and_ranges(tmp_path):
    p = tmp_path / "acc.csv"
    pd.DataFrame({"model": ["a"], "dataset": ["d"], "seed": [0], "top1": [0.5], "n_test": [10]}).to_csv(p, index=False)
    with pytest.raises(InputError, match=r"acc.csv: missing column 'top1_low'"):
        A.read_accuracies(p)
    pd.DataFrame({"model": ["a"], "dataset": ["d"], "seed": [0], "top1": [-0.1], "top1_low": [-0.2],
                  "top1_high": [0.1], "top5": [0.5], "n_test": [10]}).to_csv(p, index=False)
    with pytest.raises(InputError, match=r"row 1 \(dataset=d, model=a, seed=0\): column 'top1' = -0.1 is outside"):
        A.read_accuracies(p)


def test_read_reference_validates(tmp_path):
    p = write_reference(tmp_path / "ref.csv")
    ref = A.read_reference(p)
    assert list(ref["model"]) == sorted(REFERENCE, key=lambda m: REFERENCE[m][2])
    pct = {m: (d, w, t * 100) for m, (d, w, t) in REFERENCE.items()}
    with pytest.raises(InputError, match="column 'top1' of model .* outside \\[0, 1\\].*percentages"):
        A.read_reference(write_reference(tmp_path / "pct.csv", pct))
    pd.DataFrame({"model": ["a"], "reference": ["x"], "top1": [0.5]}).to_csv(tmp_path / "nodn.csv", index=False)
    with pytest.raises(InputError, match="nodn.csv: missing column 'display_name'"):
        A.read_reference(tmp_path / "nodn.csv")


# --------------------------------------------------------------------------- rank agreement


def test_rank_agreement_end_to_end(runs):
    acc = make_accuracies(runs)
    out = runs / "tables" / "rank_agreement.csv"
    argv = ["rank-agreement", "--accuracies", str(acc), "--reference", str(runs / "reference.csv"),
            "--predictions", *prediction_files(runs), "--params", json.dumps(PARAMS), "--out", str(out)]
    assert run_cli(*argv) == 0
    df = pd.read_csv(out)
    assert list(df[["reference", "dataset"]].itertuples(index=False, name=None)) == [
        ("imagenet", "imagenot"), ("imagenet", "other"), ("imagenot", "other")]
    assert set(A.RANK_AGREEMENT_COLUMNS + A.BOOTSTRAP_COLUMNS) <= set(df.columns)

    # point estimates: seed-averaged accuracies against the reference, via scipy
    runs_df = pd.read_csv(acc)
    means = runs_df.groupby(["dataset", "model"])["top1"].mean()
    models = sorted(REFERENCE)
    ref = np.array([REFERENCE[m][2] for m in models])
    y = means["imagenot"][models].to_numpy()
    row = df.iloc[0]
    from scipy import stats as st
    assert row["n_models"] == 5
    assert row["spearman_rho"] == pytest.approx(st.spearmanr(ref, y).statistic)
    assert row["kendall_tau"] == pytest.approx(st.kendalltau(ref, y).statistic)
    lr = st.linregress(ref / REFERENCE["alexnet"][2], y / means["imagenot"]["alexnet"])
    assert row["slope"] == pytest.approx(lr.slope) and row["pearson_r"] == pytest.approx(lr.rvalue)
    assert row["baseline"] == "alexnet" and row["n_bootstrap"] == 200
    for stat, col in (("spearman", "spearman_rho"), ("kendall", "kendall_tau"), ("slope", "slope"),
                      ("pearson_r", "pearson_r")):
        for _, r in df.iterrows():
            assert r[f"{stat}_low"] <= r[col] + 1e-9 and r[col] <= r[f"{stat}_high"] + 1e-9, (stat, r)

    # seeded: the same inputs give the same bytes
    first = out.read_bytes()
    assert run_cli(*argv) == 0
    assert out.read_bytes() == first


def test_rank_agreement_without_predictions_has_no_bootstrap_columns(runs):
    acc = make_accuracies(runs)
    out = runs / "ra.csv"
    assert run_cli("rank-agreement", "--accuracies", str(acc), "--reference", str(runs / "reference.csv"),
                   "--params", json.dumps(PARAMS), "--out", str(out)) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == A.RANK_AGREEMENT_COLUMNS + A.SEED_COLUMNS
    assert df["spearman_rho"].notna().all()


def test_rank_agreement_fewer_than_three_models_warns_and_gives_nan(tmp_path, caplog):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 100)
    for m in ("alexnet", "resnet18"):
        write_run(tmp_path, "imagenot", m, 0, rng.random(100) < 0.5, labels)
    write_reference(tmp_path / "reference.csv")
    acc = make_accuracies(tmp_path)
    out = tmp_path / "ra.csv"
    with caplog.at_level(logging.WARNING, logger="imagenot.aggregate"):
        rc = run_cli("rank-agreement", "--accuracies", str(acc), "--reference", str(tmp_path / "reference.csv"),
                     "--predictions", *prediction_files(tmp_path), "--params", json.dumps(PARAMS), "--out", str(out))
    assert rc == 0
    assert "only 2 model(s) in common (need >= 3); correlations and fit are NaN" in caplog.text
    row = pd.read_csv(out).iloc[0]
    assert row["n_models"] == 2
    for col in ("spearman_rho", "spearman_p", "kendall_tau", "kendall_p", "slope", "pearson_r", "spearman_low"):
        assert math.isnan(row[col]), col


def test_rank_agreement_prediction_checks(runs):
    acc = make_accuracies(runs)
    table = A.read_accuracies(acc)
    preds = prediction_files(runs)

    # a run without predictions
    with pytest.raises(InputError, match="no predictions.parquet for run.*dataset=imagenot model=alexnet seed=0"):
        A.correctness_matrices(table, A.read_predictions([p for p in preds if "imagenot/alexnet/seed0" not in p]))

    # predictions that disagree with their metrics.json
    target = runs / "eval/imagenot/resnet18/seed0/predictions.parquet"
    df = pd.read_parquet(target)
    df.loc[df.index[:5], "correct"] = ~df.loc[df.index[:5], "correct"]
    df.to_parquet(target, index=False)
    with pytest.raises(InputError, match=r"predictions.parquet: mean of column 'correct' is .* says top1"):
        A.read_predictions(preds)

    # a different test set for one model
    df = pd.read_parquet(runs / "eval/imagenot/alexnet/seed0/predictions.parquet")
    write_run(runs, "imagenot", "resnet18", 0, df["correct"].to_numpy(), df["label"].to_numpy(),
              keys=[f"x{i}" for i in range(len(df))])
    with pytest.raises(InputError, match="column 'key' covers different test examples"):
        A.correctness_matrices(table, A.read_predictions(preds))

    # a missing column
    df.drop(columns=["correct"]).to_parquet(target, index=False)
    with pytest.raises(InputError, match="predictions.parquet: missing column 'correct'"):
        A.read_predictions([str(target)])


def test_correctness_matrices_average_seeds(runs):
    table = A.read_accuracies(make_accuracies(runs))
    mats = A.correctness_matrices(table, A.read_predictions(prediction_files(runs)))
    assert set(mats) == {"imagenot", "other"}
    means = table.groupby(["dataset", "model"])["top1"].mean()
    for ds, per_model in mats.items():
        for m, c in per_model.items():
            assert c.mean() == pytest.approx(means[ds][m])
            assert set(np.unique(c)) <= {0.0, 0.5, 1.0}


@pytest.mark.parametrize(
    "params, message",
    [("{", "--params: not valid JSON"), ('{"n_bootstrap": -1}', "'n_bootstrap' must be an integer >= 0"),
     ('{"confidence": 95}', "'confidence' must be in (0, 1)"), ("[1]", "expected a JSON object")],
)
def test_bad_params(runs, capsys, params, message):
    acc = make_accuracies(runs)
    rc = run_cli("rank-agreement", "--accuracies", str(acc), "--reference", str(runs / "reference.csv"),
                 "--params", params, "--out", str(runs / "ra.csv"))
    assert rc == 2 and message in capsys.readouterr().err


# --------------------------------------------------------------------------- figure 1


def test_fig1_end_to_end(runs):
    import matplotlib.image as mpimg

    acc = make_accuracies(runs)
    png, pdf = runs / "figures" / "fig1.png", runs / "figures" / "fig1.pdf"
    argv = ["fig1", "--accuracies", str(acc), "--reference", str(runs / "reference.csv"),
            "--models", json.dumps(MODELS, sort_keys=True), "--params", json.dumps(PARAMS),
            "--out-png", str(png), "--out-pdf", str(pdf)]
    assert run_cli(*argv) == 0
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 800 and img.shape[1] > 1000
    assert pdf.read_bytes().startswith(b"%PDF")
    assert not list(png.parent.glob(".*tmp*"))
    # deterministic bytes
    first = (png.read_bytes(), pdf.read_bytes())
    assert run_cli(*argv) == 0
    assert (png.read_bytes(), pdf.read_bytes()) == first


def test_figure1_data(runs):
    table = A.read_accuracies(make_accuracies(runs))
    ref = A.read_reference(runs / "reference.csv")
    data = A.figure1_data(table, ref, dict(sorted(MODELS.items())), "alexnet")
    # x axis in reference (ImageNet) order, whatever the order of the models section
    assert data["order"] == sorted(REFERENCE, key=lambda m: REFERENCE[m][2])
    assert data["labels"]["mobilenet_v3_small"] == "MobileNetV3-S"
    t = data["table"].set_index(["source", "model"])
    assert t.loc[("imagenet", "alexnet"), "rel"] == pytest.approx(1.0)
    assert t.loc[("imagenot", "alexnet"), "rel"] == pytest.approx(1.0)
    base = t.loc[("imagenot", "alexnet"), "top1"]
    r = t.loc[("imagenot", "resnet18")]
    assert r["rel"] == pytest.approx(r["top1"] / base)
    assert r["rel_low"] == pytest.approx(r["top1_low"] / base) and r["interval"] == "seeds"
    agr = data["agreement"]["imagenot"]
    assert agr["n_models"] == 5 and -1 <= agr["spearman_rho"] <= 1

    # the baseline must be there
    with pytest.raises(InputError, match="no runs of baseline model 'alexnet'"):
        A.figure1_data(table[table["model"] != "alexnet"], ref, MODELS, "alexnet")
    with pytest.raises(InputError, match="baseline_model 'vgg' is not one of --models"):
        A.figure1_data(table, ref, MODELS, "vgg")


def test_fig1_with_two_models_warns(tmp_path, caplog):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 80)
    for m in ("alexnet", "resnet18"):
        write_run(tmp_path, "imagenot", m, 0, rng.random(80) < 0.5, labels)
    write_reference(tmp_path / "reference.csv")
    acc = make_accuracies(tmp_path)
    models = {m: MODELS[m] for m in ("alexnet", "resnet18")}
    with caplog.at_level(logging.WARNING, logger="imagenot.aggregate"):
        rc = run_cli("fig1", "--accuracies", str(acc), "--reference", str(tmp_path / "reference.csv"),
                     "--models", json.dumps(models), "--out-png", str(tmp_path / "f.png"),
                     "--out-pdf", str(tmp_path / "f.pdf"))
    assert rc == 0 and (tmp_path / "f.png").stat().st_size > 0
    assert "shares only 2 model(s) with the reference (need >= 3)" in caplog.text
