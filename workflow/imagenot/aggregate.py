"""Aggregate evaluation results: the accuracy table, rank agreement and Figure 1.

Subcommands of ``imagenot aggregate``:

- ``accuracies``: collect per-run ``metrics.json`` into ``results/tables/accuracies.csv``.
- ``rank-agreement``: Spearman/Kendall (with exact/asymptotic p-values and, given the
  per-example predictions, bootstrap intervals over test examples) and the linear fit of
  relative improvements, for the reference (ImageNet) against every trained dataset and for
  every pair of trained datasets.
- ``fig1``: the paper's Figure 1, accuracy relative to the baseline model (AlexNet) for the
  reference and each dataset, models in reference order.

The readers validate their input and raise :class:`InputError` naming the file and the
field; the computations are in :mod:`imagenot.stats` and the table/figure builders below
take DataFrames, so later analysis stages can reuse them without the CLI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import numbers
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats
from .io import InputError, parse_json, save_figure
from .tables import with_interval, write_table

log = logging.getLogger(__name__)

METRICS_FIELDS = ("model", "dataset", "seed", "top1", "top1_low", "top1_high", "top5", "n_test")
ACCURACY_COLUMNS = list(METRICS_FIELDS)
REFERENCE_COLUMNS = ("model", "display_name", "reference", "top1")
PREDICTION_COLUMNS = ("key", "label", "correct")
ANALYSIS_DEFAULTS = {"baseline_model": "alexnet", "n_bootstrap": 1000, "confidence": 0.95, "seed": 0,
                     "rank_stability_replicates": 500, "rank_stability_points": 16}

# how dataset/reference names are written in figures; anything else is shown as given
DATASET_LABELS = {"imagenet": "ImageNet", "imagenot": "ImageNot", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "Digits"}

# tolerance when checking that an interval contains its estimate / predictions match metrics
_TOL = 1e-6


# =========================================================================== readers


def read_metrics(path: str | Path) -> dict:
    """Read and validate one evaluation ``metrics.json``; return its fields."""
    path = Path(path)
    obj = _read_json_file(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object with fields {', '.join(METRICS_FIELDS)}")
    for field in METRICS_FIELDS:
        if field not in obj:
            raise InputError(f"{path}: missing field '{field}'")
    record = {f: obj[f] for f in METRICS_FIELDS}
    _validate_run(record, str(path), field_word="field")
    return record


def collect_accuracies(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run (model, dataset, seed) from ``metrics.json`` files, sorted."""
    records, sources = [], {}
    for p in paths:
        rec = read_metrics(p)
        run = (rec["dataset"], rec["model"], rec["seed"])
        if run in sources:
            raise InputError(
                f"{p}: run dataset={run[0]} model={run[1]} seed={run[2]} is also in {sources[run]}"
            )
        sources[run] = str(p)
        records.append(rec)
    if not records:
        raise InputError("--metrics: no metrics files given")
    df = pd.DataFrame.from_records(records, columns=ACCURACY_COLUMNS)
    return _sort_runs(df)


def read_accuracies(path: str | Path) -> pd.DataFrame:
    """Read and validate ``accuracies.csv`` (as written by ``aggregate accuracies``)."""
    path = Path(path)
    df = _read_csv_file(path)
    _require_columns(df, ACCURACY_COLUMNS, path)
    if df.empty:
        raise InputError(f"{path}: no runs")
    df = df[ACCURACY_COLUMNS].copy()
    df["model"] = df["model"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    for i, row in enumerate(df.to_dict("records")):
        row = {k: (None if _isnan(v) and k == "top5" else v) for k, v in row.items()}
        for k in ("seed", "n_test"):
            v = row[k]
            if isinstance(v, float) and v.is_integer():
                row[k] = int(v)
        where = f"{path}: row {i + 1} (dataset={row['dataset']}, model={row['model']}, seed={row['seed']})"
        _validate_run(row, where, field_word="column")
    dup = df.duplicated(["dataset", "model", "seed"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise InputError(f"{path}: run dataset={r['dataset']} model={r['model']} seed={r['seed']} appears twice")
    df["seed"] = df["seed"].astype(int)
    df["n_test"] = df["n_test"].astype(int)
    return _sort_runs(df)


def read_reference(path: str | Path) -> pd.DataFrame:
    """Read and validate the reference accuracy table (``model, display_name, reference, top1``).

    The table is one reference (ImageNet-1k accuracies of the configured models); its
    ``reference`` column says where each number comes from (``imagenot reference`` writes
    the torchvision weights name) and is not used to group rows. ``top1`` is a fraction in
    [0, 1]; rows without a value are dropped with a warning; a model may appear only once.
    """
    path = Path(path)
    df = _read_csv_file(path)
    _require_columns(df, REFERENCE_COLUMNS, path)
    df = df[list(REFERENCE_COLUMNS)].copy()
    df["model"] = df["model"].astype(str)
    df["reference"] = df["reference"].astype(str)
    df["display_name"] = df["display_name"].where(df["display_name"].notna(), df["model"]).astype(str)
    top1 = pd.to_numeric(df["top1"], errors="coerce")
    bad_type = top1.isna() & df["top1"].notna()
    if bad_type.any():
        r = df[bad_type].iloc[0]
        raise InputError(f"{path}: column 'top1' of model {r['model']} is not a number: {r['top1']!r}")
    df["top1"] = top1
    out_of_range = df["top1"].notna() & ~df["top1"].between(0.0, 1.0)
    if out_of_range.any():
        r = df[out_of_range].iloc[0]
        raise InputError(
            f"{path}: column 'top1' of model {r['model']} is {r['top1']:g}, outside [0, 1] "
            "(reference accuracies are fractions, not percentages)"
        )
    missing = df["top1"].isna()
    if missing.any():
        log.warning("%s: no reference top1 for %s; left out of the comparison", path,
                    ", ".join(df.loc[missing, "model"]))
        df = df[~missing]
    dup = df.duplicated(["model"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise InputError(f"{path}: model {r['model']} appears more than once (one reference accuracy per model)")
    if df.empty:
        raise InputError(f"{path}: no reference accuracies")
    return df.sort_values(["top1", "model"], kind="mergesort").reset_index(drop=True)


def read_predictions(paths: Sequence[str | Path]) -> dict[tuple[str, str, int], dict]:
    """Read per-example predictions; return ``{(dataset, model, seed): run}``.

    Each ``predictions.parquet`` is identified by the ``metrics.json`` next to it (both are
    written by ``imagenot evaluate``). A run holds ``path``, ``keys`` (sorted), ``labels``
    and ``correct`` (bool) aligned with ``keys``. The file must agree with its metrics
    (number of examples and top-1 accuracy).
    """
    runs: dict[tuple[str, str, int], dict] = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputError(f"{p}: predictions file not found")
        metrics_path = p.parent / "metrics.json"
        if not metrics_path.is_file():
            raise InputError(f"{p}: no metrics.json next to it to say which model, dataset and seed it is")
        meta = read_metrics(metrics_path)
        run = (meta["dataset"], meta["model"], int(meta["seed"]))
        if run in runs:
            raise InputError(f"{p}: run dataset={run[0]} model={run[1]} seed={run[2]} is also {runs[run]['path']}")
        df = _read_parquet_columns(p, PREDICTION_COLUMNS)
        if df.empty:
            raise InputError(f"{p}: no rows")
        if df["key"].isna().any():
            raise InputError(f"{p}: column 'key' has missing values")
        correct = df["correct"]
        if correct.isna().any() or not set(pd.unique(correct)).issubset({0, 1, True, False}):
            raise InputError(f"{p}: column 'correct' must be boolean (0/1) with no missing values")
        df = df.assign(key=df["key"].astype(str)).sort_values("key", kind="mergesort")
        keys = df["key"].to_numpy()
        if len(keys) > 1 and np.any(keys[1:] == keys[:-1]):
            dupkey = keys[1:][keys[1:] == keys[:-1]][0]
            raise InputError(f"{p}: column 'key' has duplicate value {dupkey!r}")
        correct = df["correct"].to_numpy().astype(bool)
        if len(df) != meta["n_test"]:
            raise InputError(f"{p}: {len(df)} rows but {metrics_path} says n_test = {meta['n_test']}")
        acc = float(correct.mean())
        if abs(acc - float(meta["top1"])) > _TOL:
            raise InputError(
                f"{p}: mean of column 'correct' is {acc:.6f} but {metrics_path} says top1 = {float(meta['top1']):.6f}"
            )
        runs[run] = {"path": str(p), "keys": keys, "labels": df["label"].to_numpy(), "correct": correct}
    return runs


def parse_params(text: str | None, option: str = "--params") -> dict:
    """The ``analysis`` config section (JSON) with defaults filled in and types checked."""
    params = parse_json(text, option, obj=True, empty={})
    out = {**ANALYSIS_DEFAULTS, **params}
    if not isinstance(out["baseline_model"], str) or not out["baseline_model"]:
        raise InputError(f"{option}: field 'baseline_model' must be a model name")
    if not _is_int(out["n_bootstrap"]) or out["n_bootstrap"] < 0:
        raise InputError(f"{option}: field 'n_bootstrap' must be an integer >= 0 (got {out['n_bootstrap']!r})")
    if not _is_number(out["confidence"]) or not 0 < out["confidence"] < 1:
        raise InputError(f"{option}: field 'confidence' must be in (0, 1) (got {out['confidence']!r})")
    if not _is_int(out["seed"]):
        raise InputError(f"{option}: field 'seed' must be an integer (got {out['seed']!r})")
    for key, low in (("rank_stability_replicates", 1), ("rank_stability_points", 2)):
        if not _is_int(out[key]) or out[key] < low:
            raise InputError(f"{option}: field '{key}' must be an integer >= {low} (got {out[key]!r})")
    return out


def parse_models(text: str, option: str = "--models") -> dict[str, dict]:
    """The ``models`` config section (JSON): ``{name: {display_name: ..., ...}}``, in config order."""
    models = parse_json(text, option)
    if not isinstance(models, dict) or not models:
        raise InputError(f"{option}: expected a non-empty JSON object mapping model name to its recipe")
    for name, recipe in models.items():
        if not isinstance(recipe, dict):
            raise InputError(f"{option}: model '{name}' must map to an object (got {type(recipe).__name__})")
        if "display_name" in recipe and not isinstance(recipe["display_name"], str):
            raise InputError(f"{option}: field '{name}.display_name' must be a string")
    return models


# =========================================================================== tables


def dataset_accuracies(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Seed-averaged accuracy per (dataset, model) with its interval (see ``stats.summarize_seeds``)."""
    return stats.summarize_seeds(runs, confidence)


def correctness_matrices(runs: pd.DataFrame, predictions: Mapping[tuple[str, str, int], dict]
                         ) -> dict[str, dict[str, np.ndarray]]:
    """Per-example correctness averaged over seeds: ``{dataset: {model: array over test keys}}``.

    Every run in ``runs`` must have predictions, and all runs of a dataset must cover the
    same test examples with the same labels (the bootstrap resamples examples jointly).
    """
    wanted = {(d, m, int(s)) for d, m, s in runs[["dataset", "model", "seed"]].itertuples(index=False)}
    missing = sorted(wanted - set(predictions))
    if missing:
        shown = "; ".join(f"dataset={d} model={m} seed={s}" for d, m, s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"--predictions: no predictions.parquet for run(s) {shown}{more}")
    extra = sorted(set(predictions) - wanted)
    if extra:
        log.warning("--predictions: %d run(s) not in the accuracy table are ignored: %s", len(extra),
                    "; ".join(predictions[r]["path"] for r in extra[:5]))
    top1 = {(d, m, int(s)): t for d, m, s, t in runs[["dataset", "model", "seed", "top1"]].itertuples(index=False)}
    out: dict[str, dict[str, np.ndarray]] = {}
    for dataset in sorted({r[0] for r in wanted}):
        ds_runs = sorted(r for r in wanted if r[0] == dataset)
        first = predictions[ds_runs[0]]
        per_model: dict[str, list[np.ndarray]] = {}
        for run in ds_runs:
            pr = predictions[run]
            if not np.array_equal(pr["keys"], first["keys"]):
                raise InputError(
                    f"{pr['path']}: column 'key' covers different test examples than {first['path']} "
                    f"(both dataset {dataset})"
                )
            if not np.array_equal(pr["labels"], first["labels"]):
                raise InputError(
                    f"{pr['path']}: column 'label' differs from {first['path']} on the same keys (dataset {dataset})"
                )
            acc = float(pr["correct"].mean())
            if abs(acc - float(top1[run])) > _TOL:
                raise InputError(
                    f"{pr['path']}: accuracy {acc:.6f} differs from the accuracy table's top1 = {top1[run]:.6f} "
                    f"for dataset={run[0]} model={run[1]} seed={run[2]}"
                )
            per_model.setdefault(run[1], []).append(pr["correct"].astype(float))
        out[dataset] = {m: np.mean(v, axis=0) for m, v in per_model.items()}
    return out


RANK_AGREEMENT_COLUMNS = [
    "reference", "dataset", "n_models", "spearman_rho", "spearman_p", "kendall_tau", "kendall_p",
    "baseline", "slope", "intercept", "pearson_r", "pearson_p", "models",
]
BOOTSTRAP_COLUMNS = [
    "n_bootstrap", "confidence", "spearman_low", "spearman_high", "kendall_low", "kendall_high",
    "slope_low", "slope_high", "pearson_r_low", "pearson_r_high",
]


def rank_agreement_table(
    runs: pd.DataFrame,
    reference: pd.DataFrame,
    baseline: str,
    correct: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    reference_name: str = "imagenet",
) -> pd.DataFrame:
    """Rank agreement of the reference with each dataset, and of each pair of datasets.

    ``runs``: per-run accuracies (``read_accuracies``); a dataset's accuracy of a model is
    its mean over seeds. ``reference``: ``read_reference``. ``correct``: per-example
    correctness from ``correctness_matrices`` (bootstrap intervals are added when given and
    ``n_bootstrap > 0``). The reference side is labelled ``reference_name``. Only models
    present on both sides are compared; with fewer than
    three the correlations and fit are NaN and a warning is logged. The fit is of the
    dataset's relative improvements (``acc / acc[baseline]``) on the reference side's.
    """
    means = dataset_accuracies(runs, confidence)
    # a side is ("reference" | "dataset", name) -> accuracy by model
    sides: dict[tuple[str, str], pd.Series] = {}
    comparisons: list[tuple[tuple[str, str], tuple[str, str]]] = []
    datasets = sorted(means["dataset"].unique())
    sides[("reference", reference_name)] = reference.set_index("model")["top1"].astype(float)
    for ds in datasets:
        sides[("dataset", ds)] = means[means["dataset"] == ds].set_index("model")["top1"].astype(float)
    comparisons += [(("reference", reference_name), ("dataset", ds)) for ds in datasets]
    comparisons += [(("dataset", a), ("dataset", b)) for a, b in itertools.combinations(datasets, 2)]

    with_bootstrap = correct is not None and n_bootstrap > 0
    # one set of bootstrap replicates per dataset (all its models), shared by every comparison
    # it takes part in, so the reference-vs-dataset and dataset-vs-dataset intervals agree
    boot: dict[str, tuple[list[str], np.ndarray]] = {}
    if with_bootstrap:
        for k, ds in enumerate(datasets):
            names = sorted(correct[ds])
            rng = np.random.default_rng([seed, k])
            boot[ds] = (names, stats.bootstrap_accuracies(np.stack([correct[ds][m] for m in names]), n_bootstrap, rng))
    per_seed = {ds: runs[runs["dataset"] == ds].pivot_table(index="seed", columns="model", values="top1")
                for ds in datasets}
    rows = []
    for left, right in comparisons:
        x_all, y_all = sides[left], sides[right]
        name = f"{left[1]} vs {right[1]}"
        common = [m for m in x_all.index if m in y_all.index]
        only = sorted(set(x_all.index) ^ set(y_all.index))
        if only:
            log.warning("rank agreement %s: models on one side only are left out: %s", name, ", ".join(only))
        # a stable model order: by the left side's accuracy, then name
        common = sorted(common, key=lambda m: (x_all[m], m))
        x = x_all[common].to_numpy()
        y = y_all[common].to_numpy()
        row: dict[str, Any] = {"reference": left[1], "dataset": right[1]}
        row.update(stats.rank_correlations(x, y))
        if len(common) < stats.MIN_MODELS:
            log.warning("rank agreement %s: only %d model(s) in common (need >= %d); correlations and fit are NaN",
                        name, len(common), stats.MIN_MODELS)
        row["baseline"] = baseline
        fit = {"slope": math.nan, "intercept": math.nan, "pearson_r": math.nan, "pearson_p": math.nan}
        base_idx = common.index(baseline) if baseline in common else None
        if base_idx is None:
            log.warning("rank agreement %s: baseline model '%s' is not on both sides; no relative-improvement fit",
                        name, baseline)
        elif x[base_idx] <= 0 or y[base_idx] <= 0:
            log.warning("rank agreement %s: baseline model '%s' has zero accuracy; no relative-improvement fit",
                        name, baseline)
            base_idx = None
        else:
            f = stats.linear_fit(x / x[base_idx], y / y[base_idx])
            fit = {k: f[k] for k in fit}
        row.update(fit)
        row["models"] = ";".join(common)
        row.update(_seed_agreement(left, right, x, y, common, per_seed, base_idx, confidence, name))
        if with_bootstrap:
            if len(common) >= stats.MIN_MODELS:
                reps = []
                for side, fixed in ((left, x), (right, y)):
                    if side[0] == "reference":
                        reps.append(np.broadcast_to(fixed, (n_bootstrap, fixed.size)))
                    else:
                        names, acc = boot[side[1]]
                        reps.append(acc[:, [names.index(m) for m in common]])
                bs = stats.agreement_intervals(reps[0], reps[1], base_idx, confidence)
                for stat in ("spearman", "kendall", "slope", "pearson_r"):
                    valid = bs.get(f"{stat}_valid")
                    if valid is not None and valid < n_bootstrap:
                        log.warning("rank agreement %s: %s undefined in %d of %d bootstrap replicates "
                                    "(tied accuracies); its interval uses the rest",
                                    name, stat, n_bootstrap - valid, n_bootstrap)
            else:
                bs = {}
            row["n_bootstrap"] = n_bootstrap
            row["confidence"] = confidence
            for col in BOOTSTRAP_COLUMNS[2:]:
                row[col] = bs.get(col, math.nan)
        rows.append(row)
    columns = RANK_AGREEMENT_COLUMNS + SEED_COLUMNS + (BOOTSTRAP_COLUMNS if with_bootstrap else [])
    return pd.DataFrame(rows, columns=columns)


def rank_agreement_display(table: pd.DataFrame) -> pd.DataFrame:
    """Compact view for Markdown/LaTeX: ``estimate [bootstrap CI] {seed CI}`` per statistic."""
    rows = []
    for r in table.to_dict("records"):
        row = {"reference": r["reference"], "dataset": r["dataset"], "models": r["n_models"], "seeds": r["n_seeds"]}
        for stat, col, p in (("spearman", "spearman_rho", "spearman_p"), ("kendall", "kendall_tau", "kendall_p"),
                             ("slope", "slope", None), ("pearson_r", "pearson_r", None)):
            txt = with_interval(r[col], r.get(f"{stat}_low"), r.get(f"{stat}_high"))
            if np.isfinite(r.get(f"seed_{stat}_low", math.nan)):
                txt += f" {{{r[f'seed_{stat}_low']:.3f}, {r[f'seed_{stat}_high']:.3f}}}"
            row[col] = txt
            if p:
                row[p] = r[p]
        rows.append(row)
    return pd.DataFrame(rows)


SEED_COLUMNS = ["n_seeds"] + [f"seed_{s}_{k}" for s in ("spearman", "kendall", "slope", "pearson_r")
                              for k in ("mean", "low", "high")]


def _seed_agreement(left, right, x, y, common, per_seed, base_idx, confidence, name) -> dict:
    """Across-seed columns: the statistics per seed (seed k of every model), t-interval over seeds.

    A trained side contributes one accuracy vector per seed that all ``common`` models have;
    the reference side is fixed. Seeds present for only some models are left out.
    """
    mats = []
    for side, fixed in ((left, x), (right, y)):
        if side[0] == "reference":
            mats.append(fixed[None, :])
            continue
        tab = per_seed[side[1]][common] if common else per_seed[side[1]].iloc[:, :0]
        tab = tab.dropna(axis=0, how="any")
        mats.append(tab)
    seed_sets = [set(t.index) for t in mats if isinstance(t, pd.DataFrame)]
    seeds = sorted(set.intersection(*seed_sets)) if seed_sets else []
    arrays = [t.loc[seeds].to_numpy() if isinstance(t, pd.DataFrame) else t for t in mats]
    if len(common) < stats.MIN_MODELS or not seeds:
        return {"n_seeds": len(seeds), **{c: math.nan for c in SEED_COLUMNS[1:]}}
    if len(seeds) < 2:
        log.info("rank agreement %s: one seed, no across-seed interval", name)
    out = stats.seed_agreement(arrays[0], arrays[1], base_idx, confidence)
    out["n_seeds"] = len(seeds)
    return out


# =========================================================================== pairwise and rank stability

PAIRWISE_COLUMNS = [
    "dataset", "model_a", "model_b", "reference_rank_a", "reference_rank_b", "reference_top1_a",
    "reference_top1_b", "top1_a", "top1_b", "diff", "adjacent", "swapped", "n_seeds", "n", "b", "c",
    "p_value", "p_holm", "verdict",
]


def pairwise_table(runs: pd.DataFrame, reference: pd.DataFrame, predictions: Mapping[tuple[str, str, int], dict],
                   confidence: float = 0.95) -> pd.DataFrame:
    """Which rank swaps against the reference are within noise: paired McNemar tests per dataset.

    Models are ranked by the reference (1 = best). For each dataset, every pair of models
    adjacent in the reference ranking, and every pair the dataset orders the other way
    (``swapped``), is tested on the dataset's test set: exact McNemar on the per-example
    predictions, discordant counts summed over the seeds both models have
    (:func:`stats.mcnemar_pooled`). ``p_holm`` is Holm-adjusted over the rows of the
    dataset; with ``alpha = 1 - confidence`` the verdict is ``agrees`` (same order as the
    reference, significant), ``agrees, within noise``, ``swap within noise`` or
    ``significant swap``. ``diff`` = ``top1_a - top1_b`` (seed means); model A is the one
    ranked higher by the reference.
    """
    alpha = 1.0 - confidence
    ref = reference.set_index("model")["top1"].astype(float)
    means = dataset_accuracies(runs, confidence).set_index(["dataset", "model"])["top1"]
    rows = []
    for ds in sorted(runs["dataset"].unique()):
        ds_runs = runs[runs["dataset"] == ds]
        models = [m for m in ref.sort_values(ascending=False, kind="mergesort").index if m in set(ds_runs["model"])]
        rank = {m: i + 1 for i, m in enumerate(models)}
        seeds = {m: sorted(int(s) for s in ds_runs.loc[ds_runs["model"] == m, "seed"]) for m in models}
        ds_rows = []
        for i, j in itertools.combinations(range(len(models)), 2):
            a, b = models[i], models[j]
            ta, tb = float(means[(ds, a)]), float(means[(ds, b)])
            adjacent, swapped = j == i + 1, ta < tb
            if not (adjacent or swapped):
                continue
            common = sorted(set(seeds[a]) & set(seeds[b]))
            if not common:
                log.warning("pairwise %s: %s and %s share no seed; not tested", ds, a, b)
                continue
            ca, cb = [], []
            for sd in common:
                pa, pb = predictions[(ds, a, sd)], predictions[(ds, b, sd)]
                if not np.array_equal(pa["keys"], pb["keys"]):
                    raise InputError(f"{pa['path']}: column 'key' covers different test examples than {pb['path']}")
                ca.append(pa["correct"])
                cb.append(pb["correct"])
            test = stats.mcnemar_pooled(ca, cb)
            ds_rows.append({"dataset": ds, "model_a": a, "model_b": b, "reference_rank_a": rank[a],
                            "reference_rank_b": rank[b], "reference_top1_a": float(ref[a]),
                            "reference_top1_b": float(ref[b]), "top1_a": ta, "top1_b": tb, "diff": ta - tb,
                            "adjacent": adjacent, "swapped": swapped, **{k: test[k] for k in
                                                                          ("n_seeds", "n", "b", "c", "p_value")}})
        adj = stats.holm([r["p_value"] for r in ds_rows])
        for r, p in zip(ds_rows, adj):
            r["p_holm"] = float(p)
            sig = p < alpha
            if r["swapped"]:
                r["verdict"] = "significant swap" if sig else "swap within noise"
            else:
                r["verdict"] = "agrees" if sig else "agrees, within noise"
        rows += ds_rows
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)


def rank_stability_table(correct: Mapping[str, Mapping[str, np.ndarray]], n_replicates: int = 500,
                         n_points: int = 16, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """:func:`stats.rank_stability` for each dataset (seed-averaged correctness), stacked."""
    frames = []
    for k, ds in enumerate(sorted(correct)):
        models = sorted(correct[ds])
        if len(models) < 2:
            log.warning("rank stability %s: fewer than two models; skipped", ds)
            continue
        c = np.stack([correct[ds][m] for m in models])
        sizes = stats.subsample_sizes(c.shape[1], n_points)
        df = stats.rank_stability(c, sizes, n_replicates, seed=seed + k, confidence=confidence)
        df.insert(0, "dataset", ds)
        df.insert(1, "n_models", len(models))
        df["n_test_full"] = c.shape[1]
        frames.append(df)
    if not frames:
        raise InputError("--predictions: no dataset has two or more models; no rank stability to compute")
    return pd.concat(frames, ignore_index=True)


def plot_rank_stability(table: pd.DataFrame, confidence: float = 0.95):
    """Probability of recovering the full-test-set ranking against the number of test examples."""
    fig, ax_p, ax_t = _figure(1, 2, (11, 4.5))
    palette = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    for k, (ds, g) in enumerate(table.groupby("dataset", sort=True)):
        col = palette[k % len(palette)]
        lab = f"{_ds_label(ds)} ({int(g['n_models'].iloc[0])} models, {int(g['n_test_full'].iloc[0])} test examples)"
        ax_p.plot(g["n_test"], g["p_recovered"], marker="o", color=col, label=lab)
        ax_p.fill_between(g["n_test"], g["p_low"], g["p_high"], color=col, alpha=0.2, linewidth=0)
        ax_t.plot(g["n_test"], g["kendall_tau"], marker="o", color=col, label=_ds_label(ds))
    for ax in (ax_p, ax_t):
        ax.set_xscale("log")
        ax.set_xlabel("Number of test examples (random subset)")
        ax.grid(alpha=0.3)
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_ylabel("P(full-test-set ranking recovered)")
    ax_p.set_title(f"(a) Exact ranking recovered ({100 * confidence:g}% Clopper-Pearson band)")
    ax_p.legend(loc="upper left", fontsize=8)
    ax_t.set_ylim(min(-0.02, float(np.nanmin(table["kendall_tau"])) - 0.05), 1.02)
    ax_t.set_ylabel("Mean Kendall τ with the full-test-set ranking")
    ax_t.set_title("(b) Agreement with the full ranking")
    n_rep = int(table["n_replicates"].iloc[0])
    fig.suptitle(f"Rank stability: {n_rep} random subsets per size, per-example predictions averaged over seeds")
    return fig


def _figure(rows: int, cols: int, size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, *axes.ravel()


# =========================================================================== figure 1


def figure1_data(runs: pd.DataFrame, reference: pd.DataFrame, models: Mapping[str, Mapping],
                 baseline: str, confidence: float = 0.95, reference_name: str = "imagenet") -> dict:
    """Everything Figure 1 shows, as plain tables (no plotting).

    Returns ``order`` (model names in reference order: ascending reference accuracy, models
    without a reference value last), ``labels`` (display names), ``reference_name``,
    ``table`` (long DataFrame: ``source, kind (reference/dataset), model, top1, top1_low,
    top1_high, rel, rel_low, rel_high, interval``) and ``agreement`` (per dataset:
    ``rank_correlations`` and ``linear_fit`` of relative improvements vs the reference).
    """
    ref_name = reference_name
    ref = reference.set_index("model")
    names = list(models)
    if baseline not in names:
        raise InputError(f"--params: baseline_model '{baseline}' is not one of --models: {names}")
    no_ref = [m for m in names if m not in ref.index]
    if no_ref:
        log.warning("fig1: no reference accuracy for %s; placed last on the x axis", ", ".join(no_ref))
    if baseline in no_ref:
        raise InputError(f"reference table: no accuracy for baseline model '{baseline}'")
    extra = sorted(set(runs["model"]) - set(names))
    if extra:
        log.warning("fig1: models in the accuracy table but not in --models are not shown: %s", ", ".join(extra))
    with_ref = sorted((m for m in names if m in ref.index), key=lambda m: (float(ref.loc[m, "top1"]), names.index(m)))
    order = with_ref + no_ref
    labels = {m: str(models[m].get("display_name") or (ref.loc[m, "display_name"] if m in ref.index else m))
              for m in order}

    records = []
    base_ref = float(ref.loc[baseline, "top1"])
    if base_ref <= 0:
        raise InputError(f"reference table: baseline model '{baseline}' has top1 = 0")
    for m in with_ref:
        t = float(ref.loc[m, "top1"])
        records.append({"source": ref_name, "kind": "reference", "model": m, "top1": t, "top1_low": math.nan,
                        "top1_high": math.nan, "rel": t / base_ref, "rel_low": math.nan, "rel_high": math.nan,
                        "interval": "none"})
    means = dataset_accuracies(runs[runs["model"].isin(order)], confidence)
    agreement = {}
    for ds in sorted(means["dataset"].unique()):
        g = means[means["dataset"] == ds].set_index("model")
        if baseline not in g.index:
            raise InputError(f"accuracy table: dataset '{ds}' has no runs of baseline model '{baseline}'")
        base = float(g.loc[baseline, "top1"])
        if base <= 0:
            raise InputError(f"accuracy table: baseline model '{baseline}' has top1 = 0 on dataset '{ds}'")
        absent = [m for m in order if m not in g.index]
        if absent:
            log.warning("fig1: dataset %s has no runs of %s", ds, ", ".join(absent))
        for m in order:
            if m not in g.index:
                continue
            r = g.loc[m]
            records.append({"source": ds, "kind": "dataset", "model": m, "top1": float(r["top1"]),
                            "top1_low": float(r["top1_low"]), "top1_high": float(r["top1_high"]),
                            "rel": float(r["top1"]) / base, "rel_low": float(r["top1_low"]) / base,
                            "rel_high": float(r["top1_high"]) / base, "interval": r["interval"]})
        common = [m for m in with_ref if m in g.index]
        x = np.array([float(ref.loc[m, "top1"]) for m in common])
        y = np.array([float(g.loc[m, "top1"]) for m in common])
        corr = stats.rank_correlations(x, y)
        if corr["n_models"] < stats.MIN_MODELS:
            log.warning("fig1: dataset %s shares only %d model(s) with the reference (need >= %d); "
                        "no rank correlation shown", ds, corr["n_models"], stats.MIN_MODELS)
        fit = stats.linear_fit(x / base_ref, y / base) if len(common) else stats.linear_fit([], [])
        agreement[ds] = {**corr, **{f"fit_{k}": v for k, v in fit.items()}, "models": common}
    table = pd.DataFrame.from_records(records, columns=["source", "kind", "model", "top1", "top1_low", "top1_high",
                                                        "rel", "rel_low", "rel_high", "interval"])
    return {"order": order, "labels": labels, "reference_name": ref_name, "baseline": baseline,
            "table": table, "agreement": agreement, "confidence": confidence}


def plot_figure1(data: Mapping):
    """Draw Figure 1 from :func:`figure1_data`; returns a matplotlib ``Figure`` (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order, labels, table = data["order"], data["labels"], data["table"]
    ref_name, baseline = data["reference_name"], data["baseline"]
    base_label = labels[baseline]
    pos = {m: i for i, m in enumerate(order)}
    conf_pct = f"{100 * data['confidence']:g}%"

    fig = Figure(figsize=(12, 9), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.15, 1])
    ax_rel = fig.add_subplot(grid[0, :])
    ax_raw = fig.add_subplot(grid[1, 0])
    ax_fit = fig.add_subplot(grid[1, 1])

    ref_tab = table[table["kind"] == "reference"]
    datasets = [s for s in dict.fromkeys(table.loc[table["kind"] == "dataset", "source"])]
    ref_style = {"color": "black", "marker": "s", "linestyle": "-", "linewidth": 1.5, "markersize": 6}
    palette = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
    # the reference sits on the tick; datasets are nudged apart so their error bars don't overlap
    spread = min(0.3, 0.1 * len(datasets))
    offsets = np.concatenate([[0.0], np.linspace(-spread / 2, spread / 2, len(datasets))
                              if len(datasets) > 1 else np.zeros(len(datasets))])

    def xs(tab, k):
        return np.array([pos[m] for m in tab["model"]], dtype=float) + offsets[k]

    # (a) relative improvement, (b) raw accuracy: reference then each dataset
    for ax, col in ((ax_rel, "rel"), (ax_raw, "top1")):
        ax.plot(xs(ref_tab, 0), ref_tab[col], label=f"{_ds_label(ref_name)} (reference)", **ref_style)
        for k, ds in enumerate(datasets):
            tab = table[table["source"] == ds]
            lo = col + "_low" if col == "rel" else "top1_low"
            hi = col + "_high" if col == "rel" else "top1_high"
            yerr = np.vstack([np.clip(tab[col] - tab[lo], 0, None), np.clip(tab[hi] - tab[col], 0, None)])
            yerr = np.nan_to_num(yerr, nan=0.0)
            agr = data["agreement"][ds]
            if np.isfinite(agr["spearman_rho"]):
                rank_txt = (f"Spearman ρ = {agr['spearman_rho']:.2f}, Kendall τ = {agr['kendall_tau']:.2f}"
                            f" (n = {agr['n_models']})")
            else:
                rank_txt = f"ρ, τ undefined (n = {agr['n_models']} < {stats.MIN_MODELS})"
            label = _ds_label(ds) + (f": {rank_txt}" if ax is ax_rel else "")
            ax.errorbar(xs(tab, k + 1), tab[col], yerr=yerr, color=palette[k % len(palette)], marker="o",
                        linestyle="--", linewidth=1.5, markersize=6, capsize=3, label=label)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([labels[m] for m in order], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    ax_rel.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax_rel.set_ylabel(f"Top-1 accuracy relative to {base_label}")
    ax_rel.set_xlabel(f"Model (ordered by {_ds_label(ref_name)} accuracy)")
    ax_rel.set_title(f"(a) Relative improvement  $X_i / X_{{\\mathrm{{{_tex_escape(base_label)}}}}}$")
    ax_rel.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax_raw.set_ylabel("Top-1 accuracy")
    ax_raw.set_title("(b) Raw test accuracy")
    ax_raw.legend(loc="best", fontsize=8, framealpha=0.9)

    # (c) relative improvement on each dataset against the reference's, with the linear fit
    ref_rel = ref_tab.set_index("model")["rel"]
    for k, ds in enumerate(datasets):
        tab = table[(table["source"] == ds) & table["model"].isin(ref_rel.index)]
        color = palette[k % len(palette)]
        xv = ref_rel[tab["model"]].to_numpy()
        yv = tab["rel"].to_numpy()
        yerr = np.nan_to_num(np.vstack([np.clip(yv - tab["rel_low"], 0, None), np.clip(tab["rel_high"] - yv, 0, None)]))
        agr = data["agreement"][ds]
        if np.isfinite(agr["fit_slope"]):
            fit_txt = f"slope = {agr['fit_slope']:.2f}, Pearson R = {agr['fit_pearson_r']:.2f}"
        else:
            fit_txt = f"no fit (n = {agr['fit_n']} < {stats.MIN_MODELS})"
        ax_fit.errorbar(xv, yv, yerr=yerr, color=color, marker="o", linestyle="none", capsize=3,
                        label=f"{_ds_label(ds)}: {fit_txt}")
        if k == 0:  # every dataset shares the x positions, so one set of names identifies all points
            _label_points(ax_fit, [labels[m] for m in tab["model"]], xv, yv, color)
        if np.isfinite(agr["fit_slope"]):
            gx = np.linspace(xv.min(), xv.max(), 2)
            ax_fit.plot(gx, agr["fit_slope"] * gx + agr["fit_intercept"], color=color, linewidth=1.2)
    ax_fit.axline((1.0, 1.0), slope=1.0, color="grey", linestyle=":", linewidth=0.8, label="y = x")
    ax_fit.set_xlabel(f"{_ds_label(ref_name)} accuracy relative to {base_label}")
    ax_fit.set_ylabel(f"Dataset accuracy relative to {base_label}")
    ax_fit.set_title("(c) Relative improvement: dataset vs reference")
    ax_fit.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax_fit.grid(alpha=0.3)

    kinds = set(table.loc[table["kind"] == "dataset", "interval"])
    err_txt = []
    if "seeds" in kinds:
        err_txt.append(f"{conf_pct} t-interval of the mean across seeds")
    if "binomial" in kinds:
        err_txt.append(f"{conf_pct} Clopper-Pearson interval of the test accuracy (one seed)")
    fig.suptitle(
        f"Figure 1: Model ranking and relative improvement, "
        f"{' vs '.join(_ds_label(d) for d in [ref_name] + datasets)}",
        fontsize=13,
    )
    note = (f"Error bars: {'; '.join(err_txt) or 'none'}; divided by {base_label}'s accuracy in (a) and (c). "
            f"{_ds_label(ref_name)}: published torchvision accuracies (no error bars).")
    fig.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))
    fig.text(0.5, 0.005, textwrap.fill(note, 150), ha="center", va="bottom", fontsize=8.5, color="dimgray")
    return fig


# =========================================================================== CLI


def cmd_accuracies(args: argparse.Namespace) -> int:
    df = collect_accuracies(args.metrics)
    write_table(df, args.out, caption="Top-1 test accuracy per run with its Clopper-Pearson interval")
    log.info("wrote %s: %d run(s), %d dataset(s), %d model(s)", args.out, len(df), df["dataset"].nunique(),
             df["model"].nunique())
    return 0


def cmd_rank_agreement(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    runs = read_accuracies(args.accuracies)
    reference = read_reference(args.reference)
    correct = None
    if args.predictions and params["n_bootstrap"] > 0:
        correct = correctness_matrices(runs, read_predictions(args.predictions))
    elif args.predictions:
        log.info("n_bootstrap = 0: predictions are not read, no bootstrap intervals")
    elif params["n_bootstrap"] > 0:
        log.info("no --predictions: no bootstrap intervals")
    table = rank_agreement_table(runs, reference, params["baseline_model"], correct=correct,
                                 n_bootstrap=params["n_bootstrap"], confidence=params["confidence"],
                                 seed=params["seed"], reference_name=args.reference_name)
    write_table(table, args.out, caption="Rank agreement with the reference and between datasets: estimate "
                "[test-example bootstrap interval] {across-seed t-interval}; all columns in the CSV",
                display=rank_agreement_display(table))
    for r in table.to_dict("records"):
        log.info("%s vs %s: n=%d spearman=%.3f kendall=%.3f slope=%.3f pearson_r=%.3f", r["reference"],
                 r["dataset"], r["n_models"], r["spearman_rho"], r["kendall_tau"], r["slope"], r["pearson_r"])
    log.info("wrote %s", args.out)
    return 0


def cmd_pairwise(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    runs = read_accuracies(args.accuracies)
    reference = read_reference(args.reference)
    predictions = read_predictions(args.predictions)
    correctness_matrices(runs, predictions)  # checks every run has predictions matching its accuracy
    table = pairwise_table(runs, reference, predictions, params["confidence"])
    write_table(table, args.out, caption=f"Pairwise exact McNemar tests (Holm-adjusted, alpha = "
                f"{1 - params['confidence']:.2g}): model A is ranked above model B by the reference")
    for ds, g in table.groupby("dataset"):
        log.info("%s: %d pair(s) tested, %d swapped, %d swap(s) within noise", ds, len(g), int(g["swapped"].sum()),
                 int((g["verdict"] == "swap within noise").sum()))
    log.info("wrote %s", args.out)
    return 0


def cmd_rank_stability(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    runs = read_accuracies(args.accuracies)
    correct = correctness_matrices(runs, read_predictions(args.predictions))
    table = rank_stability_table(correct, params["rank_stability_replicates"], params["rank_stability_points"],
                                 params["seed"], params["confidence"])
    write_table(table, args.out, caption="Probability of recovering the full-test-set ranking from a random "
                "subset of the test examples")
    save_figure(plot_rank_stability(table, params["confidence"]), args.out_png, args.out_pdf)
    log.info("wrote %s, %s and %s", args.out, args.out_png, args.out_pdf)
    return 0


def cmd_fig1(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    models = parse_models(args.models)
    runs = read_accuracies(args.accuracies)
    reference = read_reference(args.reference)
    data = figure1_data(runs, reference, models, params["baseline_model"], params["confidence"],
                        reference_name=args.reference_name)
    fig = plot_figure1(data)
    save_figure(fig, args.out_png, args.out_pdf)
    log.info("wrote %s and %s", args.out_png, args.out_pdf)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("aggregate", help="accuracy table, rank agreement and Figure 1",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="aggregate_command", required=True, metavar="SUBCOMMAND")

    a = sub.add_parser("accuracies", help="collect metrics.json files into accuracies.csv")
    a.add_argument("--metrics", nargs="+", required=True, metavar="JSON", help="per-run metrics.json files")
    a.add_argument("--out", required=True, help="output CSV (results/tables/accuracies.csv); .md and .tex beside it")
    a.set_defaults(func=cmd_accuracies)

    r = sub.add_parser("rank-agreement", help="rank correlations and relative-improvement fit")
    r.add_argument("--accuracies", required=True, help="accuracies.csv")
    r.add_argument("--reference", required=True, help="reference_accuracies.csv")
    r.add_argument("--predictions", nargs="*", default=[], metavar="PARQUET",
                   help="predictions.parquet of every run (metrics.json alongside); enables bootstrap intervals")
    r.add_argument("--params", default="{}", help="analysis config section as JSON")
    r.add_argument("--reference-name", default="imagenet", help="name of the reference (config reference.name)")
    r.add_argument("--out", required=True, help="output CSV (results/tables/rank_agreement.csv)")
    r.set_defaults(func=cmd_rank_agreement)

    pw = sub.add_parser("pairwise", help="McNemar tests: which rank swaps against the reference are within noise")
    pw.add_argument("--accuracies", required=True, help="accuracies.csv")
    pw.add_argument("--reference", required=True, help="reference_accuracies.csv")
    pw.add_argument("--predictions", nargs="+", required=True, metavar="PARQUET", help="predictions.parquet of every run")
    pw.add_argument("--params", default="{}", help="analysis config section as JSON")
    pw.add_argument("--out", required=True, help="output CSV; .md and .tex are written beside it")
    pw.set_defaults(func=cmd_pairwise)

    rs = sub.add_parser("rank-stability", help="P(full ranking recovered) vs number of test examples")
    rs.add_argument("--accuracies", required=True, help="accuracies.csv")
    rs.add_argument("--predictions", nargs="+", required=True, metavar="PARQUET", help="predictions.parquet of every run")
    rs.add_argument("--params", default="{}", help="analysis config section as JSON")
    rs.add_argument("--out", required=True, help="output CSV; .md and .tex are written beside it")
    rs.add_argument("--out-png", required=True)
    rs.add_argument("--out-pdf", required=True)
    rs.set_defaults(func=cmd_rank_stability)

    from . import analysis

    analysis.add_aggregate_commands(sub)

    f = sub.add_parser("fig1", help="Figure 1: accuracy relative to the baseline model")
    f.add_argument("--accuracies", required=True, help="accuracies.csv")
    f.add_argument("--reference", required=True, help="reference_accuracies.csv")
    f.add_argument("--models", required=True, help="models config section as JSON (display names)")
    f.add_argument("--params", default="{}", help="analysis config section as JSON")
    f.add_argument("--reference-name", default="imagenet", help="name of the reference (config reference.name)")
    f.add_argument("--out-png", required=True)
    f.add_argument("--out-pdf", required=True)
    f.set_defaults(func=cmd_fig1)


# =========================================================================== helpers


def _validate_run(rec: dict, where: str, field_word: str) -> None:
    """Type and range checks shared by metrics.json and accuracies.csv rows."""
    for k in ("model", "dataset"):
        if not isinstance(rec[k], str) or not rec[k]:
            raise InputError(f"{where}: {field_word} '{k}' must be a non-empty string (got {rec[k]!r})")
    if not _is_int(rec["seed"]):
        raise InputError(f"{where}: {field_word} 'seed' must be an integer (got {rec['seed']!r})")
    if not _is_int(rec["n_test"]) or rec["n_test"] <= 0:
        raise InputError(f"{where}: {field_word} 'n_test' must be a positive integer (got {rec['n_test']!r})")
    for k in ("top1", "top1_low", "top1_high", "top5"):
        v = rec[k]
        if k == "top5" and v is None:
            continue
        if not _is_number(v) or _isnan(v):
            raise InputError(f"{where}: {field_word} '{k}' must be a number (got {v!r})")
        if not 0.0 <= float(v) <= 1.0:
            raise InputError(f"{where}: {field_word} '{k}' = {v!r} is outside [0, 1] (accuracies are fractions)")
    if not float(rec["top1_low"]) - _TOL <= float(rec["top1"]) <= float(rec["top1_high"]) + _TOL:
        raise InputError(
            f"{where}: {field_word} 'top1' = {rec['top1']!r} is not inside "
            f"[top1_low, top1_high] = [{rec['top1_low']!r}, {rec['top1_high']!r}]"
        )
    if rec["top5"] is not None and float(rec["top5"]) < float(rec["top1"]) - _TOL:
        raise InputError(f"{where}: {field_word} 'top5' = {rec['top5']!r} is below top1 = {rec['top1']!r}")


def _sort_runs(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["dataset", "model", "seed"], kind="mergesort").reset_index(drop=True)


def _read_json_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: {e}") from None


def _read_csv_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV: {e}") from None


def _read_parquet_columns(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several error types for a non-parquet file
        raise InputError(f"{path}: not a readable parquet file: {e}") from None
    for c in columns:
        if c not in names:
            raise InputError(f"{path}: missing column '{c}' (has {', '.join(names)})")
    return pd.read_parquet(path, columns=list(columns))


def _require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    for c in columns:
        if c not in df.columns:
            raise InputError(f"{path}: missing column '{c}' (has {', '.join(map(str, df.columns))})")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _label_points(ax, texts: Sequence[str], xs: np.ndarray, ys: np.ndarray, color: str) -> None:
    """Name each point to its right, pushing labels apart vertically so they stay legible."""
    if not len(xs):
        return
    span = float(np.nanmax(ys) - np.nanmin(ys)) or 1.0
    gap = 0.045 * span
    dx = 0.02 * (float(np.nanmax(xs) - np.nanmin(xs)) or 1.0)
    placed = -np.inf
    for i in np.argsort(ys, kind="mergesort"):
        ty = max(float(ys[i]), placed + gap)
        placed = ty
        ax.annotate(texts[i], (xs[i], ys[i]), xytext=(xs[i] + dx, ty), textcoords="data", fontsize=7, color=color,
                    ha="left", va="center", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.4, "alpha": 0.6}
                    if ty != ys[i] else None)


def _ds_label(name: str) -> str:
    return DATASET_LABELS.get(name.lower(), name)


def _tex_escape(s: str) -> str:
    return "".join("\\" + c if c in "_#$%&{}" else c for c in s).replace(" ", "\\ ")
