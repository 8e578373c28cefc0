"""Statistics for comparing model rankings across datasets.

Every function here is pure: arrays or DataFrames in, numbers or DataFrames out, no IO and
no global state (randomness comes from an explicit seed). The aggregate stage and the later
analysis/report stages build on these.

Conventions
- Accuracies are fractions in [0, 1].
- Rank correlations and fits on fewer than ``MIN_MODELS`` models are NaN, never a number:
  with two models Spearman/Kendall/Pearson are +-1 by construction and say nothing.
- Degenerate inputs (a constant accuracy vector, a zero baseline) give NaN rather than a
  misleading value; callers decide whether to warn.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

MIN_MODELS = 3
EXACT_SPEARMAN_MAX_N = 9


# --------------------------------------------------------------------------- intervals


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion ``k / n``.

    Uses ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``.
    """
    k, n = _check_counts(k, n)
    _check_confidence(confidence)
    ci = _st.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def clopper_pearson_array(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Clopper-Pearson interval (beta quantiles; same values as :func:`clopper_pearson`)."""
    _check_confidence(confidence)
    k = np.asarray(k)
    n = np.asarray(n)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("clopper_pearson_array: need 0 <= k <= n and n > 0")
    k = k.astype(float)
    n = n.astype(float)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        low = np.where(k == 0, 0.0, _st.beta.ppf(alpha / 2, k, n - k + 1))
        high = np.where(k == n, 1.0, _st.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean over seeds with a Student-t confidence interval of the mean.

    Returns ``mean, std`` (sample, ddof=1), ``sem, n, low, high``. With a single seed the
    spread is unknown: ``std, sem, low, high`` are NaN.
    """
    _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("seed_interval: need a non-empty 1-d sequence")
    if not np.all(np.isfinite(x)):
        raise ValueError("seed_interval: values must be finite")
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "sem": math.nan, "n": n, "low": math.nan, "high": math.nan}
    std = float(x.std(ddof=1))
    sem = std / math.sqrt(n)
    if sem == 0.0:
        low = high = mean
    else:
        low, high = (float(v) for v in _st.t.interval(confidence, n - 1, loc=mean, scale=sem))
    return {"mean": mean, "std": std, "sem": sem, "n": n, "low": low, "high": high}


# --------------------------------------------------------------------------- rank agreement


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rho (``scipy.stats.spearmanr``; average ranks for ties) and a two-sided p-value.

    The p-value is the exact permutation p-value (all n! pairings) for n <= 9 models, which
    is what a model zoo has; scipy's t-approximation would report p = 0 for a perfect
    ranking. For larger n it is scipy's t-approximation, floored at 2 / n!.
    NaN for fewer than ``MIN_MODELS`` pairs or a constant input.
    """
    x, y = _paired(x, y)
    if x.size < MIN_MODELS or _constant(x) or _constant(y):
        return math.nan, math.nan
    res = _st.spearmanr(x, y)
    rho = float(res.statistic)
    if x.size <= EXACT_SPEARMAN_MAX_N:
        return rho, _spearman_exact_p(x, y)
    # asymptotic t-approximation; it reaches 0 at |rho| = 1, below what any permutation
    # test can give, so floor it at the smallest attainable permutation p-value 2 / n!
    return rho, max(float(res.pvalue), 2.0 / math.factorial(x.size))


@functools.lru_cache(maxsize=None)
def _permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int8)


def _spearman_exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact permutation p-value of Spearman's rho (all n! pairings; ties kept)."""
    rx = _st.rankdata(x)
    ry = _st.rankdata(y)
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    # with the rank vectors fixed up to order, rho is proportional to sum(rx * ry[perm])
    observed = abs(float(rx @ ry))
    perm_stats = np.abs(ry[_permutations(x.size)] @ rx)
    return float(np.mean(perm_stats >= observed * (1 - 1e-12) - 1e-12))


def kendall(x, y) -> tuple[float, float]:
    """Kendall's tau-b and its two-sided p-value (``scipy.stats.kendalltau``, variant 'b').

    NaN for fewer than ``MIN_MODELS`` pairs or a constant input.
    """
    x, y = _paired(x, y)
    if x.size < MIN_MODELS or _constant(x) or _constant(y):
        return math.nan, math.nan
    res = _st.kendalltau(x, y, variant="b")
    return float(res.statistic), float(res.pvalue)


def rank_correlations(x, y) -> dict:
    """``n_models, spearman_rho, spearman_p, kendall_tau, kendall_p`` for paired accuracies."""
    x, y = _paired(x, y)
    rho, rho_p = spearman(x, y)
    tau, tau_p = kendall(x, y)
    return {"n_models": int(x.size), "spearman_rho": rho, "spearman_p": rho_p, "kendall_tau": tau, "kendall_p": tau_p}


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` with each row of ``y`` (broadcast), vectorised.

    ``x`` and ``y`` are (B, m) or (m,) arrays; ties get average ranks, as in scipy. Rows that
    are constant give NaN.
    """
    rx = _st.rankdata(np.atleast_2d(np.asarray(x, dtype=float)), axis=1)
    ry = _st.rankdata(np.atleast_2d(np.asarray(y, dtype=float)), axis=1)
    return pearson_rows(rx, ry)


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` with each row of ``y`` (broadcast); NaN if constant."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.atleast_2d(np.asarray(y, dtype=float))
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = (xc * yc).sum(axis=1)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with each row of ``y`` (broadcast), vectorised.

    tau_b = (n_c - n_d) / sqrt((n0 - n1) (n0 - n2)) over all pairs i < j, with n1, n2 the
    pairs tied in x, y. Rows with all pairs tied give NaN.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.atleast_2d(np.asarray(y, dtype=float))
    m = x.shape[1]
    i, j = np.triu_indices(m, k=1)
    sx = np.sign(x[:, j] - x[:, i])
    sy = np.sign(y[:, j] - y[:, i])
    n0 = i.size
    s = (sx * sy).sum(axis=1)
    n1 = (sx == 0).sum(axis=1)
    n2 = (sy == 0).sum(axis=1)
    den = np.sqrt((n0 - n1).astype(float) * (n0 - n2).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, s / np.where(den > 0, den, 1.0), np.nan)


# --------------------------------------------------------------------------- relative improvement and fits


def relative_improvement(accuracies: Mapping[str, float] | pd.Series, baseline: str) -> pd.Series:
    """``X_i / X_baseline`` for a Series (or mapping) of accuracies indexed by model."""
    acc = pd.Series(accuracies, dtype=float)
    if baseline not in acc.index:
        raise KeyError(f"baseline model '{baseline}' not among models {sorted(map(str, acc.index))}")
    base = float(acc[baseline])
    if not np.isfinite(base) or base <= 0:
        raise ValueError(f"baseline model '{baseline}' has accuracy {base!r}; relative improvement needs > 0")
    return acc / base


def linear_fit(x, y) -> dict:
    """Least-squares line ``y = slope x + intercept`` (``scipy.stats.linregress``).

    Returns ``n, slope, intercept, pearson_r, pearson_p, slope_stderr``; all NaN (n kept) for
    fewer than ``MIN_MODELS`` points or a constant x/y.
    """
    x, y = _paired(x, y)
    out = {"n": int(x.size), "slope": math.nan, "intercept": math.nan, "pearson_r": math.nan,
           "pearson_p": math.nan, "slope_stderr": math.nan}
    if x.size < MIN_MODELS or _constant(x) or _constant(y):
        return out
    res = _st.linregress(x, y)
    out.update(slope=float(res.slope), intercept=float(res.intercept), pearson_r=float(res.rvalue),
               pearson_p=float(res.pvalue), slope_stderr=float(res.stderr))
    return out


def slope_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``y`` on each row of ``x`` (broadcast); NaN if x is constant."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.atleast_2d(np.asarray(y, dtype=float))
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    sxx = (xc * xc).sum(axis=1)
    sxy = (xc * yc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_accuracies(correct: np.ndarray, n_bootstrap: int, rng: np.random.Generator,
                         max_block: int = 2_000_000) -> np.ndarray:
    """Accuracies of each model on ``n_bootstrap`` resamples of the test examples.

    ``correct`` is (n_models, n_examples): per-example correctness (0/1, or the fraction of
    seeds correct, so the mean is the seed-averaged accuracy). Each replicate draws
    ``n_examples`` indices with replacement, shared by all models (they saw the same test
    set). Returns (n_bootstrap, n_models). Memory is bounded by drawing replicates in blocks
    of about ``max_block`` indices.
    """
    c = np.asarray(correct, dtype=float)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError("bootstrap_accuracies: correct must be (n_models, n_examples) with n_examples > 0")
    if n_bootstrap < 1:
        raise ValueError("bootstrap_accuracies: n_bootstrap must be >= 1")
    n = c.shape[1]
    block = max(1, min(n_bootstrap, max_block // n))
    out = np.empty((n_bootstrap, c.shape[0]))
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n))
        # how often each example was drawn in each replicate: (b, n)
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        out[start:start + b] = counts @ c.T / n
    return out


def bootstrap_rank_agreement(
    x_correct: np.ndarray | None,
    y_correct: np.ndarray | None,
    x_values=None,
    y_values=None,
    baseline_index: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap intervals for the agreement of two model rankings.

    Each side is either per-example correctness (``*_correct``, (n_models, n_examples),
    resampled over its own test examples) or fixed accuracies (``*_values``, (n_models,),
    e.g. published ImageNet numbers, held fixed). Models are in the same order on both sides.
    With ``baseline_index``, the slope and Pearson R of the relative improvements
    (``acc / acc[baseline]``, y on x) are bootstrapped too.

    Returns ``n_bootstrap`` and, for each of ``spearman``, ``kendall`` (and ``slope``,
    ``pearson_r`` with a baseline), ``{name}_low``, ``{name}_high`` and ``{name}_valid`` (the
    number of replicates where the statistic is defined: a replicate where one side's
    accuracies are all tied has no rank correlation). Intervals are NaN for fewer than
    ``MIN_MODELS`` models. Deterministic for a given seed.
    """
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    xs = _bootstrap_side(x_correct, x_values, n_bootstrap, rng, "x")
    ys = _bootstrap_side(y_correct, y_values, n_bootstrap, rng, "y")
    m = xs.shape[1]
    if ys.shape[1] != m:
        raise ValueError(f"bootstrap_rank_agreement: x has {m} models, y has {ys.shape[1]}")
    stats = {"spearman": spearman_rows(xs, ys), "kendall": kendall_rows(xs, ys)}
    if baseline_index is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = xs / xs[:, [baseline_index]]
            yr = ys / ys[:, [baseline_index]]
        xr[~np.isfinite(xr)] = np.nan
        yr[~np.isfinite(yr)] = np.nan
        stats["slope"] = slope_rows(xr, yr)
        stats["pearson_r"] = pearson_rows(xr, yr)
    out: dict = {"n_bootstrap": int(n_bootstrap)}
    alpha = 1.0 - confidence
    for name, values in stats.items():
        values = np.broadcast_to(values, (n_bootstrap,))
        ok = np.isfinite(values)
        out[f"{name}_valid"] = int(ok.sum())
        if m < MIN_MODELS or not ok.any():
            out[f"{name}_low"] = out[f"{name}_high"] = math.nan
        else:
            lo, hi = np.quantile(values[ok], [alpha / 2, 1 - alpha / 2])
            out[f"{name}_low"], out[f"{name}_high"] = float(lo), float(hi)
    return out


def _bootstrap_side(correct, values, n_bootstrap, rng, name) -> np.ndarray:
    if (correct is None) == (values is None):
        raise ValueError(f"bootstrap_rank_agreement: give exactly one of {name}_correct, {name}_values")
    if correct is not None:
        return bootstrap_accuracies(correct, n_bootstrap, rng)
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"bootstrap_rank_agreement: {name}_values must be 1-d")
    return np.broadcast_to(v, (n_bootstrap, v.size))


# --------------------------------------------------------------------------- paired test


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact McNemar test of two models on the same test examples.

    ``b`` = examples model A gets right and B wrong, ``c`` = the reverse; under H0 (equal
    accuracy) b ~ Binomial(b + c, 1/2). p-value is two-sided (``scipy.stats.binomtest``);
    1.0 when the models never disagree. Returns ``n, b, c, p_value, diff`` (acc_A - acc_B).
    """
    a = np.asarray(correct_a)
    bb = np.asarray(correct_b)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(f"mcnemar_exact: need two 1-d arrays of equal length (got {a.shape}, {bb.shape})")
    if a.size == 0:
        raise ValueError("mcnemar_exact: empty input")
    a = a.astype(bool)
    bb = bb.astype(bool)
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    p = 1.0 if b + c == 0 else float(_st.binomtest(b, b + c, 0.5).pvalue)
    return {"n": int(a.size), "b": b, "c": c, "p_value": p, "diff": (b - c) / a.size}


# --------------------------------------------------------------------------- summaries


def summarize_seeds(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (dataset, model) from per-seed accuracies.

    ``runs`` has columns ``dataset, model, seed, top1, top1_low, top1_high``. Returns
    ``dataset, model, n_seeds, top1 (mean over seeds), top1_std, top1_low, top1_high,
    interval``: with two or more seeds the interval is the t-interval of the mean across
    seeds (clipped to [0, 1]) and ``interval`` is ``seeds``; with one seed it is that run's
    own interval (Clopper-Pearson from evaluation) and ``interval`` is ``binomial``.
    """
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        si = seed_interval(g["top1"].to_numpy(), confidence)
        if si["n"] >= 2:
            low, high, kind = max(0.0, si["low"]), min(1.0, si["high"]), "seeds"
        else:
            low, high, kind = float(g["top1_low"].iloc[0]), float(g["top1_high"].iloc[0]), "binomial"
        rows.append({"dataset": dataset, "model": model, "n_seeds": si["n"], "top1": si["mean"],
                     "top1_std": si["std"], "top1_low": low, "top1_high": high, "interval": kind})
    cols = ["dataset", "model", "n_seeds", "top1", "top1_std", "top1_low", "top1_high", "interval"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- helpers


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"need paired values of equal length (got {x.size} and {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("values must be finite")
    return x, y


def _constant(v: np.ndarray) -> bool:
    return bool(np.all(v == v[0]))


def _check_counts(k, n) -> tuple[int, int]:
    if int(k) != k or int(n) != n:
        raise ValueError(f"counts must be integers (got k={k}, n={n})")
    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0 (got k={k}, n={n})")
    return k, n


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")

