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
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

MIN_MODELS = 3
# bootstrap draws (replicates x examples) above which replicates are drawn on threads
PARALLEL_MIN_DRAWS = 50_000_000
# cost of one multinomial category (a binomial draw) in drawn indices, measured with numpy 2
_BINOMIAL_COST = 16
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
                         max_block: int = 400_000, method: str = "auto") -> np.ndarray:
    """Accuracies of each model on ``n_bootstrap`` resamples of the test examples.

    ``correct`` is (n_models, n_examples): per-example correctness (0/1, or the fraction of
    seeds correct, so the mean is the seed-averaged accuracy). Each replicate draws
    ``n_examples`` indices with replacement, shared by all models (they saw the same test
    set). Returns (n_bootstrap, n_models).

    Exact ways to draw a replicate (all the same empirical-bootstrap distribution):

    - ``"patterns"``: examples with the same correctness vector across models are
      interchangeable, so a replicate is a multinomial draw of how often each distinct
      pattern is picked (``T`` patterns; at most ``2**n_models`` for one seed), and the
      accuracies are ``counts @ patterns / n``;
    - ``"examples"``: draw the indices, count them per example (``bincount``) and take
      ``counts @ correct.T / n``, in blocks of about ``max_block`` draws;
    - ``"auto"`` (default): the ``K`` most frequent patterns by multinomial and the other
      examples by index: the number of draws landing on the other examples is
      Binomial(n, their share), the top patterns share the rest multinomially, and the
      others are drawn uniformly. ``K`` minimises ``16 K + (examples outside the top K)``
      (a binomial costs about 16 drawn indices), so one seed's few patterns are drawn
      by pattern alone and easy/hard examples (all right / all wrong) cost one category.

    Accuracies are rounded to 12 decimals so that models with the same resampled accuracy
    tie exactly. Large jobs run in fixed chunks with seeded generators on threads.
    """
    c = np.asarray(correct, dtype=float)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError("bootstrap_accuracies: correct must be (n_models, n_examples) with n_examples > 0")
    if n_bootstrap < 1:
        raise ValueError("bootstrap_accuracies: n_bootstrap must be >= 1")
    if method not in ("auto", "patterns", "examples"):
        raise ValueError(f"bootstrap_accuracies: unknown method {method!r}")
    m, n = c.shape
    out = np.empty((n_bootstrap, m))
    # correctness as small integers (seed counts) makes float32 sums exact below 2**24
    den = _common_denominator(c, max_den=16)
    exact32 = den <= 16 and n * den < (1 << 24)
    dtype = np.float32 if exact32 else np.float64
    ct = np.ascontiguousarray(np.rint(c.T * den) if exact32 else c.T, dtype=dtype)
    scale = float(n * (den if exact32 else 1))

    if method == "examples":
        k_top = 0
    else:
        patterns, inverse, freq = np.unique(ct, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        order = np.argsort(-freq, kind="mergesort")
        if method == "patterns":
            k_top = order.size
        else:
            cost = _BINOMIAL_COST * np.arange(order.size + 1) + (n - np.concatenate([[0], np.cumsum(freq[order])]))
            k_top = int(np.argmin(cost))

    if k_top == 0:
        block = max(1, min(n_bootstrap, max_block // n))
        offsets = (np.arange(block) * n)[:, None]

        def fill(start: int, stop: int, gen: np.random.Generator) -> None:
            for lo in range(start, stop, block):
                b = min(block, stop - lo)
                idx = gen.integers(0, n, size=(b, n))
                idx += offsets[:b]
                counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(dtype)
                out[lo:lo + b] = (counts @ ct).astype(float) / scale
    else:
        top = order[:k_top]
        v_top = patterns[top].astype(np.float64)
        in_top = np.zeros(patterns.shape[0], dtype=bool)
        in_top[top] = True
        rest = np.flatnonzero(~in_top[inverse])
        n_rest = rest.size
        ct_rest = ct[rest]
        p_top = freq[top] / freq[top].sum()
        block = max(1, min(n_bootstrap, max_block // max(k_top, n_rest, 1)))

        def fill(start: int, stop: int, gen: np.random.Generator) -> None:
            for lo in range(start, stop, block):
                b = min(block, stop - lo)
                if n_rest == 0:
                    w = gen.multinomial(n, p_top, size=b)
                    out[lo:lo + b] = (w @ v_top) / scale
                    continue
                k_rest = gen.binomial(n, n_rest / n, size=b)
                w = gen.multinomial(n - k_rest, p_top)
                idx = gen.integers(0, n_rest, size=int(k_rest.sum()))
                idx += np.repeat(np.arange(b) * n_rest, k_rest)
                counts = np.bincount(idx, minlength=b * n_rest).reshape(b, n_rest).astype(dtype)
                out[lo:lo + b] = (w @ v_top + (counts @ ct_rest).astype(float)) / scale

    if n_bootstrap * n < PARALLEL_MIN_DRAWS:
        fill(0, n_bootstrap, rng)
    else:
        # fixed chunks of replicates, each with its own generator seeded from rng, on threads
        # (numpy releases the GIL in random fills and matmul): the result depends on the seed
        # only, not on the number of threads
        chunk = block * 16
        starts = list(range(0, n_bootstrap, chunk))
        seeds = rng.integers(0, 2**63 - 1, size=len(starts))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, min(len(starts), os.cpu_count() or 1))) as pool:
            jobs = [pool.submit(fill, st, min(st + chunk, n_bootstrap), np.random.default_rng(int(sd)))
                    for st, sd in zip(starts, seeds)]
            for j in jobs:
                j.result()
    return np.round(out, 12)


def agreement_intervals(xs: np.ndarray, ys: np.ndarray, baseline_index: int | None = None,
                        confidence: float = 0.95) -> dict:
    """Percentile intervals of rank agreement over replicate accuracy matrices.

    ``xs``, ``ys``: (B, n_models) accuracies of the same models on two sides, one row per
    replicate (bootstrap or seed). Returns ``{stat}_low, {stat}_high, {stat}_valid`` for
    ``spearman``, ``kendall`` and, with ``baseline_index``, ``slope`` and ``pearson_r`` of
    the relative improvements (y on x). NaN intervals for fewer than ``MIN_MODELS`` models.
    """
    _check_confidence(confidence)
    xs = np.atleast_2d(np.asarray(xs, dtype=float))
    ys = np.atleast_2d(np.asarray(ys, dtype=float))
    n_rep = max(xs.shape[0], ys.shape[0])
    m = xs.shape[1]
    if ys.shape[1] != m:
        raise ValueError(f"agreement_intervals: x has {m} models, y has {ys.shape[1]}")
    values = replicate_statistics(xs, ys, baseline_index)
    out: dict = {}
    alpha = 1.0 - confidence
    for name, v in values.items():
        v = np.broadcast_to(v, (n_rep,))
        ok = np.isfinite(v)
        out[f"{name}_valid"] = int(ok.sum())
        if m < MIN_MODELS or not ok.any():
            out[f"{name}_low"] = out[f"{name}_high"] = math.nan
        else:
            lo, hi = np.quantile(v[ok], [alpha / 2, 1 - alpha / 2])
            out[f"{name}_low"], out[f"{name}_high"] = float(lo), float(hi)
    return out


def replicate_statistics(xs: np.ndarray, ys: np.ndarray, baseline_index: int | None = None) -> dict:
    """Spearman, Kendall (and slope, Pearson R of relative improvements) of each replicate row."""
    xs = np.atleast_2d(np.asarray(xs, dtype=float))
    ys = np.atleast_2d(np.asarray(ys, dtype=float))
    out = {"spearman": spearman_rows(xs, ys), "kendall": kendall_rows(xs, ys)}
    if baseline_index is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            xr = xs / xs[:, [baseline_index]]
            yr = ys / ys[:, [baseline_index]]
        xr[~np.isfinite(xr)] = np.nan
        yr[~np.isfinite(yr)] = np.nan
        out["slope"] = slope_rows(xr, yr)
        out["pearson_r"] = pearson_rows(xr, yr)
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
    if ys.shape[1] != xs.shape[1]:
        raise ValueError(f"bootstrap_rank_agreement: x has {xs.shape[1]} models, y has {ys.shape[1]}")
    return {"n_bootstrap": int(n_bootstrap), **agreement_intervals(xs, ys, baseline_index, confidence)}


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


# --------------------------------------------------------------------------- across seeds


def seed_agreement(x_seeds: np.ndarray, y_seeds: np.ndarray, baseline_index: int | None = None,
                   confidence: float = 0.95) -> dict:
    """Rank agreement computed separately for each seed, with a t-interval across seeds.

    ``x_seeds``, ``y_seeds``: (n_seeds, n_models) accuracies, row ``k`` = the whole
    experiment run with seed ``k`` (a side with fixed values, e.g. the published reference,
    is one row broadcast to every seed). This is the spread from training randomness, a
    different source of noise from the test-example bootstrap. Returns ``n_seeds`` and, per
    statistic (``spearman``, ``kendall``, ``slope``, ``pearson_r``), ``seed_{stat}_mean``,
    ``seed_{stat}_low``, ``seed_{stat}_high`` (Student-t over seeds; correlations clipped to
    [-1, 1]); NaN with fewer than two seeds or a statistic undefined in some seed.
    """
    _check_confidence(confidence)
    x = np.atleast_2d(np.asarray(x_seeds, dtype=float))
    y = np.atleast_2d(np.asarray(y_seeds, dtype=float))
    n_seeds = max(x.shape[0], y.shape[0])
    x = np.broadcast_to(x, (n_seeds, x.shape[1]))
    y = np.broadcast_to(y, (n_seeds, y.shape[1]))
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"seed_agreement: x has {x.shape[1]} models, y has {y.shape[1]}")
    per_seed = replicate_statistics(x, y, baseline_index)
    out: dict = {"n_seeds": int(n_seeds)}
    for name in ("spearman", "kendall", "slope", "pearson_r"):
        v = per_seed.get(name)
        mean = low = high = math.nan
        if v is not None and x.shape[1] >= MIN_MODELS and np.all(np.isfinite(v)):
            mean = float(np.mean(v))
            if n_seeds >= 2:
                si = seed_interval(v, confidence)
                low, high = si["low"], si["high"]
                if name != "slope":
                    low, high = max(-1.0, low), min(1.0, high)
        out[f"seed_{name}_mean"], out[f"seed_{name}_low"], out[f"seed_{name}_high"] = mean, low, high
    return out


# --------------------------------------------------------------------------- pairwise


def mcnemar_pooled(correct_a: Sequence[np.ndarray], correct_b: Sequence[np.ndarray]) -> dict:
    """Exact McNemar test of two models over several seeds on the same test examples.

    ``correct_a[k]`` and ``correct_b[k]`` are seed ``k``'s per-example correctness of models
    A and B (aligned examples). The discordant counts are summed over seeds (``b`` = A
    right and B wrong, ``c`` = the reverse) and ``b ~ Binomial(b + c, 1/2)`` under equal
    accuracy. Returns ``n`` (example-seed pairs), ``n_seeds``, ``b``, ``c``, ``p_value``, ``diff``.
    """
    if len(correct_a) != len(correct_b) or not len(correct_a):
        raise ValueError("mcnemar_pooled: need the same positive number of seeds for both models")
    b = c = n = 0
    for ca, cb in zip(correct_a, correct_b):
        r = mcnemar_exact(ca, cb)
        b, c, n = b + r["b"], c + r["c"], n + r["n"]
    p = 1.0 if b + c == 0 else float(_st.binomtest(b, b + c, 0.5).pvalue)
    return {"n": n, "n_seeds": len(correct_a), "b": b, "c": c, "p_value": p, "diff": (b - c) / n}


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in input order."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    k = p.size
    adj = np.maximum.accumulate((k - np.arange(k)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adj, 1.0)
    return out


# --------------------------------------------------------------------------- rank stability


def subsample_sizes(n: int, n_points: int = 16, smallest: int = 10) -> np.ndarray:
    """Geometric grid of test-set sizes from ``smallest`` to ``n`` (both included, unique)."""
    if n < 1:
        raise ValueError("subsample_sizes: n must be >= 1")
    lo = min(smallest, n)
    return np.unique(np.round(np.geomspace(lo, n, max(2, n_points))).astype(int))


def rank_stability(correct: np.ndarray, sizes: Sequence[int], n_replicates: int = 500, seed: int = 0,
                   confidence: float = 0.95) -> pd.DataFrame:
    """How often a random subset of the test examples gives the full test set's ranking.

    ``correct``: (n_models, n_examples) per-example correctness (0/1 or fraction of seeds).
    For each replicate one random permutation of the examples is drawn; its first ``k``
    examples are a uniform random subset of size ``k`` (without replacement), so one
    permutation serves every size. A replicate recovers the ranking when the models' ranks
    on the subset (ties share the lowest rank) equal their ranks on all examples. Returns
    one row per size: ``n_test, n_replicates, p_recovered`` with its Clopper-Pearson
    ``p_low, p_high``, and the mean ``kendall_tau`` / ``spearman_rho`` of the subset
    ranking against the full one. At ``n_test = n_examples`` the probability is 1.
    """
    c = np.asarray(correct, dtype=float)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError("rank_stability: correct must be (n_models, n_examples)")
    if n_replicates < 1:
        raise ValueError("rank_stability: n_replicates must be >= 1")
    m, n = c.shape
    sizes = np.asarray(sorted(set(int(k) for k in sizes)))
    if sizes.size == 0 or sizes[0] < 1 or sizes[-1] > n:
        raise ValueError(f"rank_stability: sizes must be within [1, {n}]")
    # integer numerators keep equal accuracies exactly equal (ties) on every subset
    scale = _common_denominator(c)
    ci = np.rint(c.T * scale)
    ci = ci.astype(np.uint8 if ci.max() < 256 else np.int64)  # (n, m); small dtype = cheap gathers
    full_rank = _st.rankdata(ci.sum(axis=0, dtype=np.int64), method="min")
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], sizes[:-1]])
    sums = np.empty((n_replicates, sizes.size, m), dtype=np.int64)
    rows = _row_view(ci)
    for r in range(n_replicates):
        perm = rng.permutation(n)[: sizes[-1]]
        picked = rows[perm] if rows is not None else ci[perm]
        if rows is not None:
            picked = picked.view(np.uint8).reshape(perm.size, -1)[:, :m]
        sums[r] = np.cumsum(np.add.reduceat(picked, starts, axis=0, dtype=np.int64), axis=0)
    flat = sums.reshape(-1, m)
    ranks = _st.rankdata(flat, axis=1, method="min").reshape(n_replicates, sizes.size, m)
    hits = np.all(ranks == full_rank, axis=2).sum(axis=0)
    tau = np.nan_to_num(kendall_rows(flat, full_rank[None, :]), nan=0.0).reshape(n_replicates, sizes.size)
    rho = np.nan_to_num(spearman_rows(flat, full_rank[None, :]), nan=0.0).reshape(n_replicates, sizes.size)
    tau_sum, rho_sum = tau.sum(axis=0), rho.sum(axis=0)
    low, high = clopper_pearson_array(hits, np.full(sizes.size, n_replicates), confidence)
    return pd.DataFrame({
        "n_test": sizes, "n_replicates": n_replicates, "p_recovered": hits / n_replicates,
        "p_low": low, "p_high": high, "kendall_tau": tau_sum / n_replicates,
        "spearman_rho": rho_sum / n_replicates,
    })


def _row_view(ci: np.ndarray) -> np.ndarray | None:
    """Rows of a small uint8 matrix as one 8- or 16-byte element each (gathers ~10x faster)."""
    if ci.dtype != np.uint8 or ci.shape[1] > 16:
        return None
    width = 8 if ci.shape[1] <= 8 else 16
    padded = np.zeros((ci.shape[0], width), dtype=np.uint8)
    padded[:, : ci.shape[1]] = ci
    return padded.view(np.uint64 if width == 8 else np.complex128).ravel()


def _common_denominator(c: np.ndarray, max_den: int = 64) -> int:
    """Smallest d <= max_den with c * d integral (fractions of seeds correct); else 2**20."""
    for d in range(1, max_den + 1):
        if np.allclose(c * d, np.rint(c * d), atol=1e-9, rtol=0):
            return d
    return 1 << 20


# --------------------------------------------------------------------------- fits with bands


def fit_band(x, y, grid, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Least-squares fit with a percentile bootstrap band (resampling the points).

    Returns :func:`linear_fit`'s fields plus ``slope_low, slope_high``, ``grid``,
    ``band_low, band_high`` (the band of the fitted line at ``grid``) and ``n_valid``
    (replicates where x was not constant). Band and interval are NaN for fewer than
    ``MIN_MODELS`` points.
    """
    _check_confidence(confidence)
    x, y = _paired(x, y)
    grid = np.asarray(grid, dtype=float)
    out = linear_fit(x, y)
    out.update(grid=grid, band_low=np.full(grid.shape, math.nan), band_high=np.full(grid.shape, math.nan),
               slope_low=math.nan, slope_high=math.nan, n_valid=0)
    if not np.isfinite(out["slope"]) or n_bootstrap < 1:
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_bootstrap, x.size))
    xb, yb = x[idx], y[idx]
    slopes = slope_rows(xb, yb)
    ok = np.isfinite(slopes)
    out["n_valid"] = int(ok.sum())
    if not ok.any():
        return out
    slopes = slopes[ok]
    intercepts = yb[ok].mean(axis=1) - slopes * xb[ok].mean(axis=1)
    lines = slopes[:, None] * grid[None, :] + intercepts[:, None]
    alpha = 1 - confidence
    out["band_low"], out["band_high"] = np.quantile(lines, [alpha / 2, 1 - alpha / 2], axis=0)
    out["slope_low"], out["slope_high"] = (float(v) for v in np.quantile(slopes, [alpha / 2, 1 - alpha / 2]))
    return out


# --------------------------------------------------------------------------- many datasets


def correlation_matrix(accuracy: pd.DataFrame, method: str = "spearman") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pairwise rank correlation between the columns (datasets) of a model x dataset table.

    Each pair uses the models with a value in both columns. Returns (statistic, p-value,
    number of models) as square DataFrames indexed by dataset; NaN where fewer than
    ``MIN_MODELS`` models are shared.
    """
    fn = {"spearman": spearman, "kendall": kendall}[method]
    cols = list(accuracy.columns)
    stat = pd.DataFrame(np.nan, index=cols, columns=cols)
    pval = pd.DataFrame(np.nan, index=cols, columns=cols)
    count = pd.DataFrame(0, index=cols, columns=cols)
    for a in cols:
        for b in cols:
            both = accuracy[[a, b]].dropna()
            count.loc[a, b] = len(both)
            r, p = fn(both[a].to_numpy(), both[b].to_numpy())
            stat.loc[a, b], pval.loc[a, b] = r, p
    return stat, pval, count


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

