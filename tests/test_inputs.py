"""Tests for client._schema.inputs.to_table."""

from __future__ import annotations

import datetime
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from client._exceptions import SchemaValidationError
from client._schema.inputs import Table, TensorInput, to_table


def test_records_union_of_keys_in_first_seen_order() -> None:
    t = to_table([{"a": 1, "b": "x"}, {"c": 2.5, "a": 3}])
    assert t == Table(columns={"a": [1, 3], "b": ["x", None], "c": [None, 2.5]}, n_rows=2)


def test_dict_of_lists_and_scalars() -> None:
    assert to_table({"a": [1, 2], "b": ("x", "y")}) == Table({"a": [1, 2], "b": ["x", "y"]}, 2)
    assert to_table({"a": 1, "b": "x"}) == Table({"a": [1], "b": ["x"]}, 1)


def test_dict_of_columns_errors() -> None:
    with pytest.raises(SchemaValidationError, match="different lengths"):
        to_table({"a": [1, 2], "b": [1]})
    with pytest.raises(SchemaValidationError) as ei:
        to_table({"a": [1, 2], "b": 3})
    assert ei.value.problems[0].column == "b"
    with pytest.raises(SchemaValidationError, match="no rows"):
        to_table({"a": []})


@pytest.mark.parametrize("empty", [[], {}, (), pd.DataFrame(), pd.DataFrame({"a": []}), np.array([])])
def test_empty_input_rejected(empty) -> None:
    with pytest.raises(SchemaValidationError):
        to_table(empty)


@pytest.mark.parametrize("bad", [None, 3, "text", b"x", object(), {1: [1]}])
def test_unsupported_input_rejected(bad) -> None:
    with pytest.raises(SchemaValidationError):
        to_table(bad)


def test_records_must_be_dicts() -> None:
    with pytest.raises(SchemaValidationError) as ei:
        to_table([{"a": 1}, [1, 2], "x"])
    assert [p.row for p in ei.value.problems] == [1, 2]


def test_dataframe_nan_nat_and_numpy_scalars() -> None:
    df = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype=np.int32),
            "f": [1.5, np.nan],
            "s": ["x", None],
            "t": pd.to_datetime(["2024-01-02 03:04:05", None]),
            "b": [True, False],
        }
    )
    t = to_table(df)
    assert t.n_rows == 2
    assert t.columns == {
        "i": [1, 2],
        "f": [1.5, None],
        "s": ["x", None],
        "t": [datetime.datetime(2024, 1, 2, 3, 4, 5), None],
        "b": [True, False],
    }
    for values in t.columns.values():
        for v in values:
            assert v is None or type(v).__module__ in ("builtins", "datetime")


def test_dict_values_numpy_scalars_become_python() -> None:
    t = to_table({"a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True)})
    assert t.columns == {"a": [1.5], "b": [3], "c": [True]}
    assert type(t.columns["b"][0]) is int and type(t.columns["c"][0]) is bool


def test_numpy_inputs_are_tensors() -> None:
    arr = np.zeros((2, 3))
    t = to_table(arr)
    assert isinstance(t, TensorInput) and t.data is arr
    d = to_table({"x": np.zeros(2), "y": np.ones((2, 2))})
    assert isinstance(d, TensorInput) and set(d.data) == {"x", "y"}


def test_to_table_does_not_import_pandas() -> None:
    code = (
        "import sys; from client._schema.inputs import to_table; to_table([{'a': 1}]); to_table({'a': [1]});"
        "print('pandas' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
