"""edge.server.predictions: what an answer says of a classifier's rows (the class names of convert --labels)."""

from __future__ import annotations

import numpy as np

from edge.server.predictions import class_names


def test_class_names_of_probability_rows_and_of_one_probability_a_row() -> None:
    labels = ["cat", "dog", "bird"]
    assert class_names(labels, np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])) == ["dog", "cat"]
    assert class_names(["no", "yes"], np.array([[0.2], [0.9]])) == ["no", "yes"]
