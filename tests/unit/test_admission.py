"""Admission by prediction, on plain numbers."""

import pytest

from zoe_panel.admission import MIB, plan
from zoe_panel.errors import EngineError

P = {"a": 300 * MIB, "b": 450 * MIB, "c": 200 * MIB}


def test_a_model_that_fits_beside_the_loaded_ones_unloads_nothing() -> None:
    d = plan("c", P, ["a"], 600 * MIB)
    assert d.unload_first == () and d.in_use_after_bytes == 500 * MIB


def test_the_least_recently_used_go_first_until_it_fits() -> None:
    d = plan("b", P, ["a", "c"], 700 * MIB)  # a is the oldest
    assert d.unload_first == ("a",) and d.in_use_after_bytes == 650 * MIB
    d = plan("b", P, ["c", "a"], 500 * MIB)
    assert d.unload_first == ("c", "a") and d.in_use_after_bytes == 450 * MIB


def test_a_model_that_alone_does_not_fit_is_refused_with_the_numbers() -> None:
    with pytest.raises(EngineError, match="b alone is predicted to need 450 MiB, more than the budget of 400 MiB"):
        plan("b", P, [], 400 * MIB)


def test_reloading_a_loaded_model_does_not_evict_itself() -> None:
    assert plan("a", P, ["a", "b"], 800 * MIB).unload_first == ()
