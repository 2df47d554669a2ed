from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from pldiffix.diffix.anonymization.bulk import NumpyKernel, PythonKernel
from pldiffix.diffix.anonymization.contributions import ContributionTracker
from pldiffix.diffix.anonymization.exact_sum import ExactTotal, exact_total, exact_total_array
from pldiffix.diffix.anonymization.partitions import combine_trackers


def _terms(rng: random.Random) -> list[float]:
    terms = [rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300) for _ in range(rng.randrange(60))]
    return [*terms, 5e-324, -1e-310, -0.0, 0.1, 0.2, 0.3]


def test_the_total_is_the_exact_sum_rounded_once_in_any_order() -> None:
    rng = random.Random(3)
    for _ in range(300):
        terms = _terms(rng)
        total = exact_total(terms)
        assert float(total) == math.fsum(terms)
        assert exact_total_array(np, np.array(terms)).units == total.units
        rng.shuffle(terms)
        cut = rng.randrange(len(terms) + 1)
        parts = exact_total(terms[:cut]) + exact_total_array(np, np.array(terms[cut:]))
        assert isinstance(parts, ExactTotal) and parts.units == total.units
        assert float(parts) == float(total)


def test_a_float_sum_in_another_order_differs_where_the_exact_total_does_not() -> None:
    terms = [1e16, 1.0, -1e16, 1.0]
    assert sum(terms) != sum(sorted(terms))
    assert exact_total(terms) == exact_total(sorted(terms)) == 2.0


def test_non_finite_terms_give_the_float_sum_and_stay_inexact() -> None:
    for terms in ([float("nan"), 1.0], [float("inf"), 2.0]):
        for total in (exact_total(terms), exact_total_array(np, np.array(terms))):
            assert total.units is None
            assert math.isnan(total) if terms[0] != terms[0] else total == math.inf
            assert (total + exact_total([1.0])).units is None
    assert exact_total([1.7e308, 1.7e308]) == math.inf


def test_it_survives_pickling_and_mixes_with_floats_as_a_float() -> None:
    total = exact_total([0.1, 0.2])
    again = pickle.loads(pickle.dumps(total))
    assert isinstance(again, ExactTotal) and again.units == total.units
    assert type(total + 1.0) is float and type(1.0 + total) is float


@pytest.mark.parametrize("kernel", [PythonKernel(), NumpyKernel()], ids=lambda k: k.name)
def test_kernels_total_the_present_contributions(kernel) -> None:
    values = [0.1, -1.0, 0.2, 1e16, -1.0, -1e16]
    present = [v >= 0 or v == -1e16 for v in values]
    decoded = np.array(values) if isinstance(kernel, NumpyKernel) else values
    mask = np.array(present) if isinstance(kernel, NumpyKernel) else present
    kept = [v for v, keep in zip(values, present, strict=True) if keep]
    assert kernel.exact_total(decoded, mask).units == exact_total(kept).units
    assert kernel.exact_total(decoded, None).units == exact_total(values).units


def test_trackers_of_parts_combine_to_the_total_of_one_read() -> None:
    rng = random.Random(5)
    contributions = {aid: rng.choice([0.1, 0.7, 1e15, 3.3]) for aid in range(1, 400)}
    whole = ContributionTracker(dict(contributions), 0.0, exact_total(contributions.values()))
    first, second = {}, {}
    for aid, value in contributions.items():
        (first if aid % 3 else second)[aid] = value
    parts = [ContributionTracker(p, 0.0, exact_total(p.values())) for p in (second, first)]
    combined = combine_trackers(parts[0], parts[1], 3)
    assert float(combined.total) == float(whole.total)
    assert combined.total.units == whole.total.units
