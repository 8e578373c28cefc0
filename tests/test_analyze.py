"""`imagenot analyze` on a user's CSV: good tables and figures, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from imagenot import cli

IMAGENET = {"alexnet": 0.565, "vgg16": 0.716, "resnet50": 0.761, "densenet161": 0.771, "vit_b_16": 0.811,
            "convnext_base": 0.841}


def write_csv(path: Path, rows, columns=("model", "dataset", "accuracy", "n_test")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def good_rows():
    rng = np.random.default_rng(0)
    rows = []
    for m, a in IMAGENET.items():
        rows.append((m, "imagenet", a, 50000))
        rows.append((m, "imagenot", round(0.3 + (a - 0.5) * 0.9 + rng.normal(0, 0.01), 4), 10000))
        rows.append((m, "cifar10", round(0.85 + (a - 0.5) * 0.3 + rng.normal(0, 0.005), 4), 10000))
    rows.append(("extra_model", "cifar10", 0.9, 10000))  # only on one dataset
    return rows


def analyze(*argv) -> int:
    return cli.main(["analyze", *map(str, argv)])


def test_analyze_good_csv(tmp_path):
    csv = write_csv(tmp_path / "results.csv", good_rows())
    out = tmp_path / "out"
    assert analyze("--csv", csv, "--out-dir", out, "--n-bootstrap", 300) == 0
    for name in ("accuracies", "correlation_spearman", "correlation_kendall", "correlation_pairs", "rank_agreement",
                 "relative_improvement"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 50, (name, ext)
    for fig in ("correlation_matrix", "relative_improvement"):
        assert (out / f"{fig}.png").read_bytes()[:4] == b"\x89PNG" and (out / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"

    df = pd.read_csv(csv)
    wide = df.pivot(index="model", columns="dataset", values="accuracy")
    rho = pd.read_csv(out / "correlation_spearman.csv").set_index("dataset")
    assert list(rho.index) == ["imagenet", "cifar10", "imagenot"]  # reference first
    both = wide[["cifar10", "imagenot"]].dropna()
    assert rho.loc["cifar10", "imagenot"] == pytest.approx(st.spearmanr(both["cifar10"], both["imagenot"]).statistic)
    pairs = pd.read_csv(out / "correlation_pairs.csv")
    assert len(pairs) == 3 and set(pairs["n_models"]) == {6}

    ra = pd.read_csv(out / "rank_agreement.csv").set_index("dataset")
    x, y = wide["imagenet"].dropna(), wide["imagenot"][wide["imagenet"].dropna().index]
    assert ra.loc["imagenot", "spearman_rho"] == pytest.approx(st.spearmanr(x, y).statistic)
    assert ra.loc["imagenot", "kendall_tau"] == pytest.approx(st.kendalltau(x, y).statistic)
    lr = st.linregress(x / x["alexnet"], y / y["alexnet"])
    assert ra.loc["imagenot", "slope"] == pytest.approx(lr.slope)
    assert ra.loc["imagenot", "baseline"] == "alexnet" and ra.loc["imagenot", "n_models"] == 6
    assert ra.loc["imagenot", "spearman_low"] <= ra.loc["imagenot", "spearman_rho"] <= ra.loc["imagenot", "spearman_high"]
    acc = pd.read_csv(out / "accuracies.csv")
    assert (acc["accuracy_low"] <= acc["accuracy"]).all() and (acc["accuracy"] <= acc["accuracy_high"]).all()
    rel = pd.read_csv(out / "relative_improvement.csv").set_index("model")
    assert rel.loc["alexnet"].dropna().eq(1.0).all()
    assert rel.loc["resnet50", "imagenot"] == pytest.approx(wide.loc["resnet50", "imagenot"] / wide.loc["alexnet", "imagenot"])


def test_analyze_reference_and_baseline_options_and_no_n_test(tmp_path):
    rows = [(m, d, a) for m, d, a, _ in good_rows()]
    csv = write_csv(tmp_path / "r.csv", rows, columns=("model", "dataset", "accuracy"))
    out = tmp_path / "out"
    assert analyze("--csv", csv, "--out-dir", out, "--reference", "cifar10", "--baseline", "vgg16") == 0
    ra = pd.read_csv(out / "rank_agreement.csv")
    assert set(ra["reference"]) == {"cifar10"} and set(ra["baseline"]) == {"vgg16"}
    assert "spearman_low" not in ra.columns  # no n_test: no parametric bootstrap
    assert set(ra["n_models"]) == {6}


def test_analyze_percent_option_divides_by_100(tmp_path, caplog):
    rows = [(m, d, a * 100, n) for m, d, a, n in good_rows()]
    csv = write_csv(tmp_path / "pct.csv", rows)
    assert analyze("--csv", csv, "--out-dir", tmp_path / "a", "--percent", "--n-bootstrap", 0) == 0
    assert "divided by 100" in caplog.text
    write_csv(tmp_path / "frac.csv", good_rows())
    assert analyze("--csv", tmp_path / "frac.csv", "--out-dir", tmp_path / "b", "--n-bootstrap", 0) == 0
    a = pd.read_csv(tmp_path / "a/rank_agreement.csv")
    b = pd.read_csv(tmp_path / "b/rank_agreement.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("mutate, message", [
    (lambda df: df.drop(columns="accuracy"), "missing column 'accuracy'"),
    (lambda df: df.drop(columns="model"), "missing column 'model'"),
    (lambda df: pd.concat([df, df.iloc[[3]]]), "appears more than once"),
    (lambda df: df.assign(accuracy=df["accuracy"] * 100), "looks like a percentage"),
    (lambda df: df.assign(accuracy=df["accuracy"].where(df.index != 2, -0.1)), "outside [0, 1]"),
    (lambda df: df.assign(accuracy=df["accuracy"].where(df.index != 2, 140.0)), "outside [0, 1]"),
    (lambda df: df.assign(accuracy=df["accuracy"].astype(object).where(df.index != 1, "n/a")), "row 3: column 'accuracy' is not a number"),
    (lambda df: df[df["model"].isin(["alexnet", "vgg16"])], "column 'model' has 2 distinct model(s)"),
    (lambda df: df[df["dataset"] == "imagenet"], "need two or more datasets"),
    (lambda df: df.assign(n_test=df["n_test"].where(df.index != 0, -5)), "row 2: column 'n_test' must be a positive integer"),
])
def test_analyze_bad_csv_names_file_and_field(tmp_path, capsys, mutate, message):
    df = mutate(pd.DataFrame(good_rows(), columns=["model", "dataset", "accuracy", "n_test"]))
    csv = tmp_path / "bad.csv"
    df.to_csv(csv, index=False)
    assert analyze("--csv", csv, "--out-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(csv) in err and message in err, err
    assert not (tmp_path / "out").exists()  # nothing written: no wrong numbers


def test_analyze_unknown_reference_or_baseline(tmp_path, capsys):
    csv = write_csv(tmp_path / "r.csv", good_rows())
    assert analyze("--csv", csv, "--out-dir", tmp_path / "o", "--reference", "mnist") == 2
    assert "--reference: dataset 'mnist' is not in the CSV" in capsys.readouterr().err
    assert analyze("--csv", csv, "--out-dir", tmp_path / "o", "--baseline", "extra_model") == 2
    assert "no accuracy on the reference dataset 'imagenet'" in capsys.readouterr().err
    assert analyze("--csv", tmp_path / "missing.csv", "--out-dir", tmp_path / "o") == 2
    assert "file not found" in capsys.readouterr().err
