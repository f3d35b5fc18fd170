"""Pointing game and energy in the box on hand-made maps, values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clipvil.metrics.localisation import energy_in_box, localisation_scores, pointing_game


def test_pointing_game_grid_map() -> None:
    heat = np.array([[0.0, 1.0], [0.0, 0.2]])  # a 2x2 grid over a 100x200 (H x W) image
    # the maximum's cell (row 0, col 1) covers x 100..200, y 0..50: its centre is (150, 25)
    assert pointing_game(heat, [100, 0, 100, 50], (100, 200))
    assert pointing_game(heat, [140, 20, 20, 10], (100, 200))
    assert not pointing_game(heat, [0, 0, 100, 100], (100, 200))  # 50 px left of the point
    assert pointing_game(heat, [0, 0, 100, 100], (100, 200), tolerance=50)
    assert not pointing_game(heat, [0, 0, 100, 100], (100, 200), tolerance=49)
    assert not pointing_game(np.zeros((3, 3)), [0, 0, 100, 100], (100, 100))  # constant: no maximum


def test_pointing_game_image_resolution() -> None:
    heat = np.zeros((10, 20))
    heat[7, 3] = 5.0  # pixel centre (3.5, 7.5)
    assert pointing_game(heat, [3, 7, 1, 1], (10, 20))
    assert not pointing_game(heat, [4, 7, 2, 2], (10, 20))
    assert pointing_game(heat, [4, 7, 2, 2], (10, 20), tolerance=0.5)


def test_energy_in_box() -> None:
    heat = np.array([[1.0, 3.0], [0.0, 4.0]])  # 2x2 over 100x100: cells of 50x50
    # the box covers cell (0,0) fully and half of cell (0,1): (1 + 3/2) / 8
    assert energy_in_box(heat, [0, 0, 75, 50], (100, 100)) == pytest.approx(2.5 / 8)
    assert energy_in_box(heat, [0, 0, 100, 100], (100, 100)) == pytest.approx(1.0)
    assert energy_in_box(heat, [200, 200, 5, 5], (100, 100)) == 0.0
    ones = np.ones((4, 4))  # image resolution
    assert energy_in_box(ones, [1, 1, 2, 2], (4, 4)) == pytest.approx(4 / 16)
    assert energy_in_box(ones, [0.5, 0, 1, 1], (4, 4)) == pytest.approx(1 / 16)
    assert energy_in_box(np.array([[-2.0, 1.0]]), [0, 0, 1, 1], (1, 2)) == 0.0  # negatives count as 0
    assert energy_in_box(np.zeros((2, 2)), [0, 0, 1, 1], (2, 2)) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        energy_in_box(np.ones(4), [0, 0, 1, 1], (2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        pointing_game(np.array([[np.nan, 1.0]]), [0, 0, 1, 1], (1, 2))


def test_localisation_scores() -> None:
    heat = np.array([[0.0, 1.0], [0.0, 0.0]])
    items = [(heat, [50, 0, 50, 50], (100, 100)), (heat, [0, 50, 50, 50], (100, 100))]
    out = localisation_scores(items)
    assert out == {"pointing": 50.0, "energy": pytest.approx(50.0), "n": 2.0}
