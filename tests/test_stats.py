"""imagenot.stats against scipy and textbook values."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from imagenot import stats as S


# --------------------------------------------------------------------------- Clopper-Pearson


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (0, 10, 0.0, 0.3085),      # upper = 1 - 0.025**(1/10)
        (5, 10, 0.1871, 0.8129),
        (10, 10, 0.6915, 1.0),
        (1, 1, 0.025, 1.0),
    ],
)
def test_clopper_pearson_textbook(k, n, low, high):
    lo, hi = S.clopper_pearson(k, n, 0.95)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_clopper_pearson_closed_form_at_zero():
    for n in (1, 7, 100):
        assert S.clopper_pearson(0, n, 0.9)[1] == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)


def test_clopper_pearson_array_matches_binomtest():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 500, 50)
    k = (rng.random(50) * (n + 1)).astype(int)
    k[:3] = 0
    k[3:6] = n[3:6]
    for conf in (0.9, 0.95, 0.99):
        lo, hi = S.clopper_pearson_array(k, n, conf)
        for i in range(len(n)):
            ci = st.binomtest(int(k[i]), int(n[i])).proportion_ci(conf, method="exact")
            assert lo[i] == pytest.approx(ci.low, abs=1e-10)
            assert hi[i] == pytest.approx(ci.high, abs=1e-10)


@pytest.mark.parametrize("k, n", [(-1, 10), (11, 10), (0, 0), (1.5, 10)])
def test_clopper_pearson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError):
        S.clopper_pearson(k, n)


def test_confidence_must_be_a_fraction():
    with pytest.raises(ValueError, match="confidence"):
        S.clopper_pearson(1, 2, 95)


# --------------------------------------------------------------------------- seed interval


def test_seed_interval_matches_t_distribution():
    x = [0.41, 0.44, 0.39, 0.43]
    out = S.seed_interval(x, 0.95)
    m, s = np.mean(x), np.std(x, ddof=1)
    half = st.t.ppf(0.975, 3) * s / 2
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(m)
    assert out["std"] == pytest.approx(s)
    assert (out["low"], out["high"]) == pytest.approx((m - half, m + half))


def test_seed_interval_single_seed_has_no_spread():
    out = S.seed_interval([0.5])
    assert out["mean"] == 0.5 and out["n"] == 1
    assert all(math.isnan(out[k]) for k in ("std", "sem", "low", "high"))


def test_seed_interval_identical_seeds():
    out = S.seed_interval([0.3, 0.3, 0.3])
    assert out["low"] == out["high"] == pytest.approx(0.3)


def test_summarize_seeds_uses_seed_t_interval_or_run_interval():
    runs = pd.DataFrame({
        "dataset": ["d"] * 4, "model": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0],
        "top1": [0.40, 0.44, 0.42, 0.5], "top1_low": [0.3, 0.34, 0.32, 0.41], "top1_high": [0.5, 0.54, 0.52, 0.59],
    })
    out = S.summarize_seeds(runs).set_index("model")
    si = S.seed_interval([0.40, 0.44, 0.42])
    assert out.loc["a", "n_seeds"] == 3 and out.loc["a", "interval"] == "seeds"
    assert out.loc["a", "top1"] == pytest.approx(0.42)
    assert (out.loc["a", "top1_low"], out.loc["a", "top1_high"]) == pytest.approx((si["low"], si["high"]))
    assert out.loc["b", "interval"] == "binomial"
    assert (out.loc["b", "top1_low"], out.loc["b", "top1_high"]) == (0.41, 0.59)


# --------------------------------------------------------------------------- rank correlations


def test_identical_and_reversed_rankings():
    x = [0.57, 0.70, 0.72, 0.76, 0.78, 0.81, 0.82, 0.84, 0.85]
    y = [0.40, 0.45, 0.47, 0.50, 0.52, 0.55, 0.56, 0.58, 0.60]
    same = S.rank_correlations(x, y)
    assert same["spearman_rho"] == pytest.approx(1.0) and same["kendall_tau"] == pytest.approx(1.0)
    rev = S.rank_correlations(x, y[::-1])
    assert rev["spearman_rho"] == pytest.approx(-1.0) and rev["kendall_tau"] == pytest.approx(-1.0)
    # exact permutation p-values: 2 of the 9! orderings are as extreme
    assert same["spearman_p"] == pytest.approx(2 / math.factorial(9))
    assert same["kendall_p"] == pytest.approx(2 / math.factorial(9))
    assert same["n_models"] == 9


def test_rank_correlations_agree_with_scipy_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(3, 15))
        x = rng.random(n)
        y = x + rng.normal(0, 0.3, n)
        if rng.random() < 0.3:  # ties
            x = np.round(x, 1)
        if np.all(x == x[0]):
            continue
        rho, _ = S.spearman(x, y)
        tau, tau_p = S.kendall(x, y)
        assert rho == pytest.approx(st.spearmanr(x, y).statistic)
        ref = st.kendalltau(x, y, variant="b")
        assert tau == pytest.approx(ref.statistic)
        assert tau_p == pytest.approx(ref.pvalue)


def test_spearman_p_is_exact_permutation_for_small_n():
    rng = np.random.default_rng(2)
    for n in (4, 5, 6):
        x = rng.random(n)
        y = np.round(x + rng.normal(0, 0.2, n), 1)  # possibly tied
        ref = st.permutation_test((x,), lambda a: st.spearmanr(a, y).statistic,
                                  permutation_type="pairings", n_resamples=np.inf)
        rho, p = S.spearman(x, y)
        assert rho == pytest.approx(ref.statistic)
        assert p == pytest.approx(ref.pvalue)


def test_spearman_p_large_n_is_scipy_asymptotic():
    rng = np.random.default_rng(3)
    x = rng.random(30)
    y = x + rng.normal(0, 0.5, 30)
    assert S.spearman(x, y)[1] == pytest.approx(st.spearmanr(x, y).pvalue)


@pytest.mark.parametrize("x, y", [([0.5, 0.6], [0.4, 0.7]), ([0.5], [0.4]), ([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])])
def test_too_few_or_constant_gives_nan(x, y):
    out = S.rank_correlations(x, y)
    assert all(math.isnan(out[k]) for k in ("spearman_rho", "spearman_p", "kendall_tau", "kendall_p"))
    fit = S.linear_fit(x, y)
    assert math.isnan(fit["slope"]) and math.isnan(fit["pearson_r"])


def test_row_versions_match_scipy():
    rng = np.random.default_rng(4)
    x = np.round(rng.random((200, 7)), 1)  # many ties
    y = rng.random(7)
    rho = S.spearman_rows(x, y)
    tau = S.kendall_rows(x, y)
    for i in range(len(x)):
        if np.all(x[i] == x[i, 0]):
            assert math.isnan(rho[i]) and math.isnan(tau[i])
            continue
        assert rho[i] == pytest.approx(st.spearmanr(x[i], y).statistic)
        assert tau[i] == pytest.approx(st.kendalltau(x[i], y).statistic)
        lr = st.linregress(x[i], y)
        assert S.slope_rows(x[i], y)[0] == pytest.approx(lr.slope)
        assert S.pearson_rows(x[i], y)[0] == pytest.approx(lr.rvalue)


# --------------------------------------------------------------------------- relative improvement and fit


def test_relative_improvement():
    rel = S.relative_improvement({"alexnet": 0.5, "resnet": 0.75, "vit": 0.6}, "alexnet")
    assert rel.to_dict() == pytest.approx({"alexnet": 1.0, "resnet": 1.5, "vit": 1.2})
    with pytest.raises(KeyError, match="alexnet"):
        S.relative_improvement({"resnet": 0.7}, "alexnet")
    with pytest.raises(ValueError, match="> 0"):
        S.relative_improvement({"alexnet": 0.0, "resnet": 0.7}, "alexnet")


def test_linear_fit_matches_linregress():
    rng = np.random.default_rng(5)
    x = 1 + rng.random(9)
    y = 1.01 * x - 0.01 + rng.normal(0, 0.02, 9)
    fit = S.linear_fit(x, y)
    lr = st.linregress(x, y)
    assert fit["n"] == 9
    assert fit["slope"] == pytest.approx(lr.slope)
    assert fit["intercept"] == pytest.approx(lr.intercept)
    assert fit["pearson_r"] == pytest.approx(lr.rvalue)
    assert fit["pearson_r"] == pytest.approx(st.pearsonr(x, y).statistic)


# --------------------------------------------------------------------------- bootstrap


def _correct(rng, accs, n):
    return (rng.random((len(accs), n)) < np.asarray(accs)[:, None]).astype(float)


def test_bootstrap_accuracies_resamples_examples_jointly():
    rng = np.random.default_rng(6)
    c = _correct(rng, [0.3, 0.6], 50)
    c[1] = c[0]  # identical models stay identical in every replicate
    boot = S.bootstrap_accuracies(c, 300, np.random.default_rng(0), max_block=1000, method="examples")
    assert boot.shape == (300, 2)
    np.testing.assert_array_equal(boot[:, 0], boot[:, 1])
    # the block size does not change the draws
    again = S.bootstrap_accuracies(c, 300, np.random.default_rng(0), max_block=10_000_000, method="examples")
    np.testing.assert_allclose(boot, again)
    # a replicate is the mean over a resample of the examples
    idx = np.random.default_rng(0).integers(0, 50, size=(1, 50))[0]
    assert boot[0, 0] == pytest.approx(c[0, idx].mean())


def test_bootstrap_by_pattern_has_the_example_bootstrap_distribution():
    """Drawing how often each distinct correctness pattern is picked is the same bootstrap."""
    rng = np.random.default_rng(11)
    c = _correct(rng, [0.3, 0.5, 0.55, 0.8], 400)
    c[2] = c[1]
    by_pattern = S.bootstrap_accuracies(c, 4000, np.random.default_rng(1), method="patterns")
    by_example = S.bootstrap_accuracies(c, 4000, np.random.default_rng(2), method="examples")
    np.testing.assert_array_equal(by_pattern[:, 1], by_pattern[:, 2])  # joint resampling
    # three seeds (fractions 0, 1/3, 2/3, 1) and 9 models: many patterns, the hybrid path
    c9 = (rng.random((9, 3, 400)) < np.linspace(0.3, 0.8, 9)[:, None, None]).mean(axis=1)
    c9[:, :150] = 1.0  # easy examples: one frequent pattern
    hybrid = S.bootstrap_accuracies(c9, 4000, np.random.default_rng(3))
    example9 = S.bootstrap_accuracies(c9, 4000, np.random.default_rng(4), method="examples")
    np.testing.assert_allclose(hybrid * 1200, np.rint(hybrid * 1200), atol=1e-7)  # k / (3 n)
    cov9 = np.cov(c9, bias=True) / 400
    for boot in (hybrid, example9):
        np.testing.assert_allclose(boot.mean(axis=0), c9.mean(axis=1), atol=4 * np.sqrt(cov9.diagonal().max() / 4000))
        np.testing.assert_allclose(np.cov(boot.T), cov9, rtol=0.12, atol=2e-5)
    # mean = observed accuracy, covariance = the multinomial's cov(c) / n, for both methods
    expected_cov = np.cov(c, bias=True) / c.shape[1]
    for boot in (by_pattern, by_example):
        np.testing.assert_allclose(boot.mean(axis=0), c.mean(axis=1), atol=4 * np.sqrt(expected_cov.diagonal().max() / 4000))
        np.testing.assert_allclose(np.cov(boot.T), expected_cov, rtol=0.1, atol=2e-5)
    # every replicate's accuracies are k / n
    np.testing.assert_allclose(by_pattern * 400, np.rint(by_pattern * 400), atol=1e-8)
    # seeded
    auto = S.bootstrap_accuracies(c, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(auto, S.bootstrap_accuracies(c, 50, np.random.default_rng(1)))
    # a single seed, two models and many examples: patterns alone (4 categories)
    c2 = _correct(rng, [0.3, 0.6], 5000)
    np.testing.assert_array_equal(S.bootstrap_accuracies(c2, 30, np.random.default_rng(5)),
                                  S.bootstrap_accuracies(c2, 30, np.random.default_rng(5), method="patterns"))


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(7)
    ref = np.array([0.57, 0.68, 0.70, 0.72, 0.75, 0.78, 0.80, 0.82, 0.85])
    c = _correct(rng, 0.4 + (ref - 0.57) * 0.7, 400)
    acc = c.mean(axis=1)
    kw = dict(y_values=ref, baseline_index=0, n_bootstrap=400, confidence=0.95, seed=11)
    a = S.bootstrap_rank_agreement(c, None, **kw)
    b = S.bootstrap_rank_agreement(c, None, **kw)
    assert a == b
    assert a != S.bootstrap_rank_agreement(c, None, **{**kw, "seed": 12})
    rho, _ = S.spearman(acc, ref)
    tau, _ = S.kendall(acc, ref)
    fit = S.linear_fit(ref / ref[0], acc / acc[0])
    assert a["spearman_low"] <= rho <= a["spearman_high"]
    assert a["kendall_low"] <= tau <= a["kendall_high"]
    # the slope is of y (here the fixed reference) on x (here the resampled side)
    fit_ref_on_acc = S.linear_fit(acc / acc[0], ref / ref[0])
    assert a["slope_low"] <= fit_ref_on_acc["slope"] <= a["slope_high"]
    assert a["pearson_r_low"] <= fit["pearson_r"] <= a["pearson_r_high"]
    assert -1 <= a["spearman_low"] < a["spearman_high"] <= 1
    assert a["n_bootstrap"] == 400 and a["spearman_valid"] == 400


def test_bootstrap_two_resampled_sides_and_few_models():
    rng = np.random.default_rng(8)
    c1 = _correct(rng, [0.3, 0.5, 0.7, 0.8], 300)
    c2 = _correct(rng, [0.2, 0.4, 0.5, 0.7], 200)  # different test sets, different sizes
    out = S.bootstrap_rank_agreement(c1, c2, n_bootstrap=200, seed=0)
    assert out["spearman_low"] <= 1.0 <= out["spearman_high"] + 1e-12
    few = S.bootstrap_rank_agreement(c1[:2], c2[:2], n_bootstrap=50, seed=0)
    assert math.isnan(few["spearman_low"]) and math.isnan(few["kendall_high"])


def test_bootstrap_needs_one_source_per_side():
    with pytest.raises(ValueError, match="exactly one"):
        S.bootstrap_rank_agreement(None, None, y_values=[1, 2, 3], n_bootstrap=10)


# --------------------------------------------------------------------------- McNemar


def test_mcnemar_constructed_case():
    # 100 examples: both right 50, both wrong 20, A only 25, B only 5
    a = np.array([1] * 50 + [0] * 20 + [1] * 25 + [0] * 5, dtype=bool)
    b = np.array([1] * 50 + [0] * 20 + [0] * 25 + [1] * 5, dtype=bool)
    out = S.mcnemar_exact(a, b)
    assert (out["n"], out["b"], out["c"]) == (100, 25, 5)
    assert out["diff"] == pytest.approx(0.20)
    # two-sided exact binomial: 2 * P(X <= 5), X ~ Bin(30, 1/2)
    assert out["p_value"] == pytest.approx(2 * st.binom.cdf(5, 30, 0.5))
    assert sum(comb(30, i) for i in range(6)) == 174437
    # by hand: 2 * (C(30,0) + ... + C(30,5)) / 2**30 = 2 * 174437 / 2**30
    assert out["p_value"] == pytest.approx(2 * 174437 / 2**30, rel=1e-12)
    sym = S.mcnemar_exact(b, a)
    assert sym["p_value"] == pytest.approx(out["p_value"]) and sym["diff"] == pytest.approx(-0.20)


def test_mcnemar_no_disagreement_and_bad_shapes():
    a = np.array([1, 0, 1], dtype=bool)
    assert S.mcnemar_exact(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError):
        S.mcnemar_exact(a, a[:2])


# --------------------------------------------------------------------------- across seeds, pairwise, stability, bands


def test_seed_agreement_is_per_seed_scipy_with_t_interval():
    rng = np.random.default_rng(21)
    ref = np.sort(rng.uniform(0.5, 0.85, 6))
    seeds = ref[None, :] * 0.7 + rng.normal(0, 0.02, (4, 6))
    out = S.seed_agreement(ref, seeds, baseline_index=0)
    rhos = [st.spearmanr(ref, s).statistic for s in seeds]
    taus = [st.kendalltau(ref, s).statistic for s in seeds]
    slopes = [st.linregress(ref / ref[0], s / s[0]).slope for s in seeds]
    assert out["n_seeds"] == 4
    assert out["seed_spearman_mean"] == pytest.approx(np.mean(rhos))
    assert out["seed_kendall_mean"] == pytest.approx(np.mean(taus))
    assert out["seed_slope_mean"] == pytest.approx(np.mean(slopes))
    lo, hi = st.t.interval(0.95, 3, loc=np.mean(slopes), scale=st.sem(slopes))
    assert (out["seed_slope_low"], out["seed_slope_high"]) == pytest.approx((lo, hi))
    lo, hi = st.t.interval(0.95, 3, loc=np.mean(rhos), scale=st.sem(rhos))
    assert out["seed_spearman_low"] == pytest.approx(max(-1, lo)) and out["seed_spearman_high"] == pytest.approx(min(1, hi))
    one = S.seed_agreement(ref, seeds[:1], baseline_index=0)
    assert one["n_seeds"] == 1 and one["seed_spearman_mean"] == pytest.approx(rhos[0])
    assert math.isnan(one["seed_spearman_low"]) and math.isnan(one["seed_slope_high"])


def test_mcnemar_pooled_sums_discordant_counts_over_seeds():
    rng = np.random.default_rng(3)
    a = [rng.random(200) < 0.7 for _ in range(3)]
    b = [rng.random(200) < 0.6 for _ in range(3)]
    out = S.mcnemar_pooled(a, b)
    bb = sum(int(np.sum(x & ~y)) for x, y in zip(a, b))
    cc = sum(int(np.sum(~x & y)) for x, y in zip(a, b))
    assert (out["b"], out["c"], out["n"], out["n_seeds"]) == (bb, cc, 600, 3)
    assert out["p_value"] == pytest.approx(st.binomtest(bb, bb + cc, 0.5).pvalue)
    assert out["diff"] == pytest.approx((bb - cc) / 600)
    with pytest.raises(ValueError):
        S.mcnemar_pooled(a, b[:2])


def test_holm_step_down():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(S.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.holm([0.5, 0.9]), [1.0, 1.0])
    assert S.holm([]).size == 0


def test_rank_stability_limits_and_growth():
    rng = np.random.default_rng(5)
    n = 3000
    c = (rng.random((4, n)) < np.array([0.5, 0.56, 0.62, 0.7])[:, None]).astype(float)
    sizes = S.subsample_sizes(n, 8)
    assert sizes[0] == 10 and sizes[-1] == n and np.all(np.diff(sizes) > 0)
    df = S.rank_stability(c, sizes, n_replicates=200, seed=0)
    assert list(df["n_test"]) == list(sizes)
    full = df.iloc[-1]
    assert full["p_recovered"] == 1.0 and full["kendall_tau"] == pytest.approx(1.0)
    assert full["p_low"] > 0.98 and full["p_high"] == 1.0
    assert df["p_recovered"].iloc[0] < 0.5  # 10 examples rarely order four models correctly
    # monotone up to sampling noise
    p = df["p_recovered"].to_numpy()
    assert np.all(np.diff(p) > -0.1) and p[-2] > p[0]
    assert np.all((df["p_low"] <= df["p_recovered"]) & (df["p_recovered"] <= df["p_high"]))
    again = S.rank_stability(c, sizes, n_replicates=200, seed=0)
    pd.testing.assert_frame_equal(df, again)


def test_rank_stability_seed_fractions_and_bad_sizes():
    rng = np.random.default_rng(8)
    c = (rng.random((3, 3, 500)) < np.array([0.4, 0.5, 0.6])[:, None, None]).mean(axis=1)  # 3 seeds
    df = S.rank_stability(c, [50, 500], n_replicates=50)
    assert df["p_recovered"].iloc[-1] == 1.0
    with pytest.raises(ValueError):
        S.rank_stability(c, [0, 10], n_replicates=5)
    with pytest.raises(ValueError):
        S.rank_stability(c, [501], n_replicates=5)


def test_fit_band_covers_the_fit_and_slope_interval():
    rng = np.random.default_rng(9)
    x = np.linspace(0.4, 0.6, 9)
    y = 0.3 * x + 0.5 + rng.normal(0, 0.005, 9)
    grid = np.linspace(0.35, 0.65, 7)
    out = S.fit_band(x, y, grid, n_bootstrap=2000, seed=1)
    lr = st.linregress(x, y)
    assert out["slope"] == pytest.approx(lr.slope) and out["pearson_r"] == pytest.approx(lr.rvalue)
    line = lr.slope * grid + lr.intercept
    assert np.all(out["band_low"] <= line + 1e-12) and np.all(line <= out["band_high"] + 1e-12)
    assert out["slope_low"] < lr.slope < out["slope_high"]
    # the band is narrowest near the middle of the data
    width = out["band_high"] - out["band_low"]
    assert width[3] < width[0] and width[3] < width[-1]
    few = S.fit_band(x[:2], y[:2], grid)
    assert math.isnan(few["slope"]) and np.all(np.isnan(few["band_low"]))


def test_correlation_matrix_matches_scipy_pairwise():
    rng = np.random.default_rng(10)
    acc = pd.DataFrame(rng.uniform(0.3, 0.9, (7, 3)), columns=["a", "b", "c"])
    acc.iloc[0, 2] = np.nan  # c has one model fewer
    rho, p, n = S.correlation_matrix(acc)
    both = acc[["a", "c"]].dropna()
    assert rho.loc["a", "c"] == pytest.approx(st.spearmanr(both["a"], both["c"]).statistic)
    assert n.loc["a", "c"] == 6 and n.loc["a", "b"] == 7
    assert rho.loc["b", "b"] == pytest.approx(1.0)
    tau, _, _ = S.correlation_matrix(acc, "kendall")
    assert tau.loc["a", "b"] == pytest.approx(st.kendalltau(acc["a"], acc["b"]).statistic)
    np.testing.assert_allclose(rho.to_numpy(), rho.to_numpy().T)


def test_agreement_intervals_from_replicates_match_row_statistics():
    rng = np.random.default_rng(12)
    xs = rng.uniform(0.5, 0.8, (300, 5))
    ys = xs + rng.normal(0, 0.03, (300, 5))
    out = S.agreement_intervals(xs, ys, baseline_index=0)
    rhos = [st.spearmanr(a, b).statistic for a, b in zip(xs, ys)]
    assert (out["spearman_low"], out["spearman_high"]) == pytest.approx(tuple(np.quantile(rhos, [0.025, 0.975])))
    assert out["spearman_valid"] == 300
