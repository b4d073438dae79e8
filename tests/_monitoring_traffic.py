"""Traffic for the monitoring tests: iris rows drawn from the training set, as they are, or with
``sepal width (cm)`` shifted by 1 cm and ``petal width (cm)`` null in every fifth row."""

from __future__ import annotations

from typing import Any

SHIFTED = "sepal width (cm)"
NULLED = "petal width (cm)"
ROWS = 80
#: Rows per call: the trace's request and response previews (1,000 characters) hold 4 iris rows whole,
#: so the report reads no span.
ROWS_PER_CALL = 4


def iris_rows(n: int = ROWS, seed: int = 1, drifted: bool = False) -> list[dict[str, Any]]:
    from sklearn.datasets import load_iris

    rows = load_iris(as_frame=True).data.sample(n, replace=True, random_state=seed).to_dict("records")
    if drifted:
        for i, row in enumerate(rows):
            row[SHIFTED] += 1.0
            if i % 5 == 0:
                row[NULLED] = None
    return rows


def send(predictor: Any, rows: list[dict[str, Any]]) -> None:
    for i in range(0, len(rows), ROWS_PER_CALL):
        predictor.predict(rows[i:i + ROWS_PER_CALL])
