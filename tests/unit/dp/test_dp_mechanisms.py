"""The DP mechanisms' distributions, partition selection and an empirical privacy check.

Tolerances are stated per test; each is several standard errors wide, so a correct mechanism
fails with negligible probability while a wrong scale (a factor 2) fails every time.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from pldiffix.core import exact_sampling
from pldiffix.core.exact_sampling import (
    bernoulli_exp,
    discrete_gaussian,
    discrete_laplace,
    rational_epsilon,
    rational_sqrt_floor,
)
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import mechanisms, planner, release
from pldiffix.dp.mechanisms import (
    DiscreteGaussian,
    DiscreteLaplace,
    PartitionSelection,
    exponential_mechanism,
    exponential_quantile,
    tail_above,
)
from pldiffix.dp.query import parse

ONE_ROW = planner.TableMetadata(unique_aid=True)  # one row per unit


def test_discrete_laplace_variance_and_tail_match_theory() -> None:
    """10^5 draws at scale 2: the variance 2p/(1-p)^2 within 5% (the estimate's standard error
    is ~0.8%), P(Z = 0) = (1-p)/(1+p) within 0.01 (standard error ~0.0014), the 95% tail
    P(|Z| > w) = 2p^(w+1)/(1+p) within 0.005 (standard error ~0.0006), the mean within 0.05
    (standard error ~0.009)."""
    mechanism = DiscreteLaplace(1, Fraction(1, 2))
    draws = [discrete_laplace(mechanism.scale) for _ in range(100_000)]
    p = math.exp(-0.5)
    assert statistics.pvariance(draws) == pytest.approx(2 * p / (1 - p) ** 2, rel=0.05)
    assert mechanism.stddev**2 == pytest.approx(2 * p / (1 - p) ** 2)
    assert abs(statistics.fmean(draws)) < 0.05
    counts = Counter(draws)
    assert counts[0] / len(draws) == pytest.approx((1 - p) / (1 + p), abs=0.01)
    width = mechanism.half_width(0.95)
    tail = 2 * p ** (width + 1) / (1 + p)
    assert tail <= 0.05 < 2 * p**width / (1 + p)  # the smallest width with 95% inside
    assert sum(abs(x) > width for x in draws) / len(draws) == pytest.approx(tail, abs=0.005)


def test_discrete_laplace_is_symmetric_and_integer() -> None:
    draws = [discrete_laplace(Fraction(3)) for _ in range(20_000)]
    assert all(isinstance(x, int) for x in draws)
    positive, negative = sum(x > 0 for x in draws), sum(x < 0 for x in draws)
    assert abs(positive - negative) < 4 * math.sqrt(positive + negative)  # ~4 standard errors


def test_bernoulli_exp_is_exact_in_distribution() -> None:
    """P(True) = exp(-gamma) within 0.01 (standard error ~0.0015) for gammas below and above 1."""
    for gamma in (Fraction(1, 3), Fraction(5, 2)):
        hits = sum(bernoulli_exp(gamma) for _ in range(40_000))
        assert hits / 40_000 == pytest.approx(math.exp(-float(gamma)), abs=0.01)


def test_rational_epsilon_never_exceeds_the_float() -> None:
    for epsilon in (0.1, 1 / 3, 0.5, 2.0, 1e-9):
        rational = rational_epsilon(epsilon)
        assert 0 < rational <= Fraction(epsilon)
        assert float(rational) == pytest.approx(epsilon, rel=1e-5)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            rational_epsilon(bad)


def test_noise_comes_from_the_csprng_only() -> None:
    for path in Path(mechanisms.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert "import random" not in source and "from random" not in source, path


@pytest.mark.parametrize(("partitions", "epsilon", "delta"), [(1, 0.5, 1e-6), (4, 0.1, 1e-9)])
def test_partition_selection_threshold_bounds_a_single_unit(
    partitions: int, epsilon: float, delta: float
) -> None:
    """P(release | one unit) <= delta / partitions, and the threshold is the smallest such."""
    selection = PartitionSelection(partitions, rational_epsilon(epsilon), delta)
    scale = selection.noise.scale
    threshold = selection.threshold
    assert partitions * tail_above(scale, threshold - 1) <= delta
    assert partitions * tail_above(scale, threshold - 2) > delta


def test_partition_selection_never_releases_a_single_unit_key() -> None:
    """10^4 keys of one unit each, delta 1e-9: none is released (the chance of any is 1e-5);
    keys far above the threshold are kept."""
    selection = PartitionSelection(1, rational_epsilon(1.0), 1e-9)
    assert not any(selection.keeps(1) for _ in range(10_000))
    assert all(selection.keeps(selection.threshold + 60) for _ in range(1_000))


@pytest.mark.parametrize(
    ("partitions", "per_partition", "sensitivity", "delta"), [(3, 2, 6, 1e-6), (20, 5, 20, 1e-9)]
)
def test_thresholding_a_count_bounds_the_keys_of_a_single_unit(
    partitions: int, per_partition: int, sensitivity: int, delta: float
) -> None:
    """Over a released count (Linf per_partition, noise scale sensitivity / epsilon): a key
    that one unit alone makes has a count of at most per_partition, and is released with
    probability partitions * P(per_partition + Z >= threshold) <= delta; the threshold is the
    smallest such."""
    selection = PartitionSelection(
        partitions, Fraction(1), delta, per_partition=per_partition, sensitivity=sensitivity
    )
    scale = selection.noise.scale
    assert scale == sensitivity
    margin = selection.threshold - per_partition  # Z must reach this
    assert partitions * tail_above(scale, margin) <= delta
    assert partitions * tail_above(scale, margin - 1) > delta


def test_partition_selection_by_a_count_on_neighbouring_datasets() -> None:
    """Count by key, one row per unit, epsilon 1, delta 0.3 (large, so that the delta event is
    seen): D has a key of 1 unit; D' adds one unit to it, D'' adds one in a key of its own.
    10 000 releases each: every outcome for the key (its value, or not released) seen 300 times
    on D and D' keeps the ratio of its frequencies within e^epsilon * 1.3 (over 3 standard
    errors); on D'' the new key is released with frequency at most delta + 0.015 (theory
    P(1 + Z >= threshold), within 5 standard errors)."""
    catalog = StaticCatalog(
        {
            ("public", "visits"): RelationInfo(
                "public",
                "visits",
                RelationKind.PERSONAL,
                (ColumnInfo("id", "integer", is_aid=True), ColumnInfo("city", "text")),
            )
        }
    )
    query = parse("SELECT city, count(*) FROM visits GROUP BY city", catalog)
    metadata = planner.TableMetadata(1, False)
    plan = planner.plan(query, metadata, seed=1)
    budget = release.Budget(Fraction(1), 0.3, 1, True, selection_by_count=True)
    threshold = release.selection(plan, budget, metadata).threshold

    def outcomes(rows: list[dict]) -> Counter[int | None]:
        seen: Counter[int | None] = Counter()
        for _ in range(10_000):
            released = release.release(plan, budget, rows, {}, metadata)
            values = {row.keys[0]: row.values[0].value for row in released}
            seen[values.get("Rome")] += 1
        return seen

    on_d = outcomes([{"g0": "Rome", "units": 1, "a0_n": 1}])
    on_d_prime = outcomes([{"g0": "Rome", "units": 2, "a0_n": 2}])
    compared = [v for v in on_d if on_d[v] >= 300 and on_d_prime[v] >= 300]
    assert None in compared and len(compared) >= 3
    for value in compared:
        ratio = on_d[value] / on_d_prime[value]
        assert 1 / (math.e * 1.3) <= ratio <= math.e * 1.3, (value, ratio)
    fresh = {"g0": "Oslo", "units": 1, "a0_n": 1}
    draws = 10_000
    fresh_released = sum(
        any(row.keys == ("Oslo",) for row in release.release(plan, budget, [fresh], {}, metadata))
        for _ in range(draws)
    )
    theory = tail_above(Fraction(1), threshold - 1)
    assert theory <= 0.3 and fresh_released / draws <= 0.3 + 0.015
    assert abs(fresh_released / draws - theory) < 5 * math.sqrt(theory / draws)


def test_partition_selection_needs_a_delta() -> None:
    with pytest.raises(ValueError):
        PartitionSelection(1, Fraction(1), 0.0)


def _count_query() -> tuple[planner.Plan, release.Budget]:
    catalog = StaticCatalog(
        {
            ("public", "people"): RelationInfo(
                "public",
                "people",
                RelationKind.PERSONAL,
                (ColumnInfo("id", "integer", is_aid=True), ColumnInfo("city", "text")),
            )
        }
    )
    query = parse("SELECT count(*) FROM people", catalog)
    plan = planner.plan(query, planner.TableMetadata(unique_aid=True), seed=1)
    return plan, release.Budget(rational_epsilon(1.0), 0.0, 1, False)


def test_empirical_privacy_of_a_dp_count_on_neighbouring_datasets() -> None:
    """A count over 50 people and over the same 50 plus one, released 10^4 times each at
    epsilon 1: for every answer seen at least 500 times in both, the ratio of its frequencies
    stays below e^epsilon * 1.25. The tolerance covers the sampling error (about 3 standard
    errors of a ratio of two such frequencies); twice the epsilon (ratio e^2) would fail."""
    plan, budget = _count_query()

    def answers(count: int) -> Counter[int]:
        row = {"units": count, "a0_n": count}
        return Counter(
            release.release(plan, budget, [row], {}, ONE_ROW)[0].values[0].value
            for _ in range(10_000)
        )

    smaller, larger = answers(50), answers(51)
    compared = [v for v in smaller if smaller[v] >= 500 and larger[v] >= 500]
    assert len(compared) >= 3
    bound = math.e * 1.25
    for value in compared:
        ratio = smaller[value] / larger[value]
        assert 1 / bound <= ratio <= bound, (value, ratio)


def test_intervals_cover_the_true_count_at_least_95_percent() -> None:
    """2000 releases: the 95% interval covers the true count in at least 93% (3 standard errors
    below 95%)."""
    plan, budget = _count_query()
    row = {"units": 40, "a0_n": 40}
    covered = 0
    for _ in range(2000):
        low, high = release.release(plan, budget, [row], {}, ONE_ROW)[0].values[0].interval or (
            0,
            0,
        )
        covered += low <= 40 <= high
    assert covered / 2000 >= 0.93


def test_exponential_quantile_lands_near_the_median_for_a_large_epsilon() -> None:
    counts = [0] * 101
    counts[30] = 500
    counts[70] = 500  # the ranks 500 and 501 are at 30 and 70: every point in [30, 70] is best
    values = [exponential_quantile(counts, 0.5, Fraction(10), 1) for _ in range(200)]
    assert all(30 <= v <= 70 for v in values)
    assert mechanisms.quantile_rank_error(101, Fraction(10), 1) == pytest.approx(
        0.2 * math.log(101 / 0.05)
    )


def _quantile_theory(counts: list[int], q: float, epsilon: float, k: int) -> list[float]:
    """Smith's probabilities on the grid: exp(-epsilon * dist(q n, ranks of j) / 2k)."""
    n, below, weights = sum(counts), 0, []
    for count in counts:
        low, high = below, below + count
        weights.append(math.exp(-epsilon * max(0.0, low - q * n, q * n - high) / (2 * k)))
        below = high
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("q", [0.5, 0.3])
def test_exponential_quantile_draws_each_candidate_with_its_exact_probability(q: float) -> None:
    """4 grid points, 6 values, epsilon 1: the theory's probabilities are exp(-dist(q n,
    [rows below j, rows up to j]) / 2) normalized, the smallest about 0.08. 20 000 draws: the
    total variation distance to them below 0.02 (its expectation is ~0.005; with twice the rate
    it would be ~0.1), and every point drawn within 5 standard errors of its probability."""
    counts = [3, 0, 2, 1]
    theory = _quantile_theory(counts, q, 1.0, 1)
    draws = 20_000
    seen = Counter(exponential_quantile(counts, q, Fraction(1), 1) for _ in range(draws))
    observed = [seen[j] / draws for j in range(4)]
    assert sum(abs(o - t) for o, t in zip(observed, theory, strict=True)) / 2 < 0.02
    for o, t in zip(observed, theory, strict=True):
        assert abs(o - t) < 5 * math.sqrt(t * (1 - t) / draws)


def test_exponential_quantile_on_neighbouring_datasets_stays_within_e_to_the_epsilon() -> None:
    """D: 6 values on 5 grid points; D': D plus one unit's 2 values (k = 2), epsilon 1. 20 000
    draws each: for every point the ratio of its frequencies stays within e^epsilon * 1.2 (the
    smallest probability is about 0.1, so 1.2 is over 4 standard errors of the ratio); theory
    bounds it by e^(epsilon / 2) here, and a mechanism at twice the rate would exceed e * 1.2."""
    d = [2, 1, 0, 2, 1]
    d_prime = [2, 1, 2, 2, 1]
    draws = 20_000
    on_d = Counter(exponential_quantile(d, 0.5, Fraction(1), 2) for _ in range(draws))
    on_d_prime = Counter(exponential_quantile(d_prime, 0.5, Fraction(1), 2) for _ in range(draws))
    for point in range(5):
        ratio = on_d[point] / on_d_prime[point]
        assert math.exp(-1) / 1.2 <= ratio <= math.e * 1.2, (point, ratio)
    on_d_theory = _quantile_theory(d, 0.5, 1, 2)
    theory = [a / b for a, b in zip(on_d_theory, _quantile_theory(d_prime, 0.5, 1, 2), strict=True)]
    assert max(max(theory), 1 / min(theory)) <= math.exp(0.5) + 1e-9


def test_exponential_quantile_refuses_a_quantile_outside_0_1() -> None:
    with pytest.raises(ValueError):
        exponential_quantile([1, 2], 1.5, Fraction(1), 1)


def test_exponential_mechanism_follows_its_losses_and_rate() -> None:
    """Losses [0, 1, 2, 4, 7] at rate 1/2 and at rate 1: 20 000 draws each within total
    variation 0.02 of exp(-rate * loss) normalized (the two distributions are 0.16 apart)."""
    losses = [4, 0, 7, 1, 2]  # in no particular order
    for rate in (Fraction(1, 2), Fraction(1)):
        weights = [math.exp(-float(rate) * loss) for loss in losses]
        theory = [w / sum(weights) for w in weights]
        seen = Counter(exponential_mechanism(losses, rate) for _ in range(20_000))
        observed = [seen[j] / 20_000 for j in range(5)]
        assert min(observed) > 0
        assert sum(abs(o - t) for o, t in zip(observed, theory, strict=True)) / 2 < 0.02


def test_a_far_candidate_keeps_a_positive_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    """exp(-1000) is 0 as a double, so floating-point weights never draw the second candidate.
    Here it is drawn whenever the exact Bernoulli coins come out so, an event of probability
    (1 - 1/e) e^-1000 > 0: the level draw succeeds once then fails, and the acceptance of
    e^-999 succeeds. The coins are scripted; every other draw is the CSPRNG's."""
    calls = []

    def scripted(numerator: int, denominator: int) -> bool:
        calls.append((numerator, denominator))
        return len(calls) != 2  # the level G = 1, then every coin of the acceptance succeeds

    monkeypatch.setattr(mechanisms, "bernoulli_exp_at_most_one", scripted)
    monkeypatch.setattr(exact_sampling, "bernoulli_exp_at_most_one", scripted)
    assert exponential_mechanism([0, 2000], Fraction(1, 2)) == 1
    assert calls == [(1, 1)] * 2 + [(1, 1)] * 998 + [(2, 2)]  # level; e^-999 as 999 e^-1


def test_exponential_mechanism_takes_huge_counts_exactly() -> None:
    """10^12 values at grid points 10 and 90: the points between them are the only likely
    answers (every other is e^-(5 * 10^11) less likely), drawn without overflow."""
    counts = [0] * 101
    counts[10], counts[90] = 10**12, 10**12
    values = {exponential_quantile(counts, 0.5, Fraction(1), 1) for _ in range(50)}
    assert values <= set(range(10, 91))


def test_exponential_mechanism_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        exponential_mechanism([], Fraction(1))
    with pytest.raises(ValueError):
        exponential_mechanism([0, 1], Fraction(0))


def _discrete_gaussian_pmf(sigma_squared: float, support: int) -> dict[int, float]:
    weights = {z: math.exp(-z * z / (2 * sigma_squared)) for z in range(-support, support + 1)}
    total = sum(weights.values())
    return {z: w / total for z, w in weights.items()}


@pytest.mark.parametrize("sigma_squared", [Fraction(1, 3), Fraction(9, 2)])
def test_discrete_gaussian_matches_its_distribution(sigma_squared: Fraction) -> None:
    """10 000 draws against the exact pmf (normalized over +-40 sigma): total variation below
    0.03 (the estimate's sampling error is ~0.01 at sigma^2 = 4.5, where ~17 values carry the
    mass; a sigma off by a factor 2 gives ~0.2), the mean within 0.1 and the variance within
    8% of the pmf's (standard errors ~0.02 and ~1.5%)."""
    draws = [discrete_gaussian(sigma_squared) for _ in range(10_000)]
    pmf = _discrete_gaussian_pmf(float(sigma_squared), 40 + 40 * math.isqrt(int(sigma_squared)))
    seen = Counter(draws)
    assert set(seen) <= set(pmf)
    distance = sum(abs(seen[z] / len(draws) - p) for z, p in pmf.items()) / 2
    assert distance < 0.03
    assert statistics.fmean(draws) == pytest.approx(0.0, abs=0.1)
    variance = sum(z * z * p for z, p in pmf.items())
    assert statistics.pvariance(draws) == pytest.approx(variance, rel=0.08)


def test_discrete_gaussian_of_rho_has_sigma_from_sensitivity_and_rho() -> None:
    """rho-zCDP with L2 sensitivity D: sigma^2 = D^2 / (2 rho); its 95% half-width covers at
    least 95% of 4 000 draws (the subgaussian bound is conservative: ~99% are inside)."""
    mechanism = DiscreteGaussian(3, Fraction(1, 8))
    assert mechanism.variance_parameter == Fraction(36)
    assert mechanism.scale == 6.0
    width = mechanism.half_width(0.95)
    assert width == math.ceil(6.0 * math.sqrt(2 * math.log(40)))
    inside = sum(abs(mechanism.release(100) - 100) <= width for _ in range(4_000))
    assert inside / 4_000 >= 0.95


def test_discrete_gaussian_refuses_a_variance_that_is_not_positive() -> None:
    with pytest.raises(ValueError):
        discrete_gaussian(Fraction(0))
    with pytest.raises(ValueError):
        discrete_gaussian(Fraction(-1))


@pytest.mark.parametrize(
    "value", [Fraction(0), Fraction(2), Fraction(1, 3), Fraction(10**-18), Fraction(49, 100)]
)
def test_rational_sqrt_floor_is_below_and_close_to_the_root(value: Fraction) -> None:
    root = rational_sqrt_floor(value)
    assert root * root <= value
    if value:
        assert root > 0
        assert float(root) == pytest.approx(math.sqrt(value), rel=1e-5)
