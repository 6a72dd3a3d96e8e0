"""lab.schedules: the cosine learning-rate decay the trainers share."""

from __future__ import annotations

import pytest

from lab.schedules import cosine_factor


def test_learning_rate_follows_the_cosine_from_one_to_the_final_fraction():
    factors = [cosine_factor(step, 100, 0.05) for step in range(0, 101, 10)]
    assert factors[0] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.05)
    assert factors[5] == pytest.approx(0.525)  # half-way: the mean of the two ends
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))
    assert cosine_factor(150, 100, 0.05) == pytest.approx(0.05)  # past STEPS it stays at the floor


def test_cosine_without_a_floor_ends_at_zero_and_tolerates_empty_schedules():
    assert cosine_factor(10, 10) == pytest.approx(0.0)
    assert cosine_factor(0, 0) == pytest.approx(1.0)  # a zero-length schedule: no division by zero
