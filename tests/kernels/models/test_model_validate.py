"""Input validation: tests for stratalab/kernels/models/validate.py and tensors.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.runtime import load_model
from stratalab.kernels.models.signature import ModelSignature, TensorSpec
from stratalab.kernels.models.tensors import decode_array, encode_array, to_array
from stratalab.kernels.models.validate import (
    batch_rows,
    check_inputs,
    check_schema,
    validate_payload,
)

MLP = ModelSignature(
    format="onnx",
    inputs=[TensorSpec("x", [None, 4], "float32")],
    outputs=[TensorSpec("y", [None, 3], "float32")],
)
TOKENS = ModelSignature(
    format="onnx",
    inputs=[
        TensorSpec("input_ids", [None, None], "int64"),
        TensorSpec("attention_mask", [None, None], "int64"),
    ],
    outputs=[TensorSpec("pooled", [None, 4], "float32")],
)
NUMBERS_NO_NAN = {"type": "array", "items": {"type": "number"}, "allow_nan": False}


def test_valid_json_lists_are_cast_to_the_model_dtype(mlp_onnx: Path) -> None:
    # Prepare: what a JSON client sends (float64 after parsing)
    inputs = {"x": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]}
    # Execute
    arrays = check_inputs(MLP, inputs)
    # Assert
    assert arrays["x"].dtype == np.float32
    assert arrays["x"].shape == (2, 4)
    load_model(mlp_onnx, "onnx").run(arrays)  # and ORT accepts them


def test_wrong_feature_count_names_expected_shape() -> None:
    with pytest.raises(InvalidInput) as info:
        check_inputs(MLP, {"x": np.zeros((2, 3), dtype=np.float32)})
    assert info.value.message == "input 'x' expected shape [None, 4] (float32), got [2, 3]"
    assert info.value.details == {"input": "x", "expected_shape": [None, 4], "shape": [2, 3]}


def test_wrong_rank_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"expected shape \[None, 4\] \(float32\), got \[4\]"):
        check_inputs(MLP, {"x": [1.0, 2.0, 3.0, 4.0]})


def test_float_for_int64_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="input 'input_ids' expected dtype int64, got float64"):
        check_inputs(TOKENS, {"input_ids": [[1.5, 2.0]], "attention_mask": [[1, 1]]})


def test_missing_and_unexpected_inputs_are_named() -> None:
    with pytest.raises(InvalidInput, match="missing input 'attention_mask'"):
        check_inputs(TOKENS, {"input_ids": [[1, 2]]})
    with pytest.raises(InvalidInput, match="unexpected input 'z'"):
        check_inputs(MLP, {"x": [[1, 2, 3, 4]], "z": [1]})


def test_inputs_disagreeing_on_batch_are_refused() -> None:
    with pytest.raises(InvalidInput, match="disagree on the batch dimension"):
        check_inputs(TOKENS, {"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1]]})


def test_batch_limit_and_empty_batch() -> None:
    with pytest.raises(InvalidInput, match="batch of 5 rows exceeds the limit of 4"):
        check_inputs(MLP, {"x": np.zeros((5, 4))}, max_batch=4)
    with pytest.raises(InvalidInput, match="empty"):
        check_inputs(MLP, {"x": np.zeros((0, 4))})


def test_ragged_and_non_numeric_lists_are_refused() -> None:
    with pytest.raises(InvalidInput, match="rectangular"):
        check_inputs(MLP, {"x": [[1, 2, 3, 4], [1, 2]]})
    with pytest.raises(InvalidInput, match="must be numbers"):
        check_inputs(MLP, {"x": [["a", "b", "c", "d"]]})


def test_raw_data_shape_form_is_reshaped() -> None:
    arrays = check_inputs(MLP, {"x": {"data": list(range(8)), "shape": [2, 4]}})
    assert arrays["x"].shape == (2, 4)
    with pytest.raises(InvalidInput, match="do not fit shape"):
        to_array({"data": list(range(7)), "shape": [2, 4]})


def test_wire_form_round_trips_and_checks_its_size() -> None:
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    wire = encode_array(array)
    np.testing.assert_array_equal(decode_array(wire), array)
    with pytest.raises(InvalidInput, match="do not fill shape"):
        decode_array({**wire, "shape": [4, 4]})
    with pytest.raises(InvalidInput, match="not supported"):
        decode_array({**wire, "dtype": "object"})


def test_nan_is_refused_when_the_schema_says_allow_nan_false() -> None:
    # Prepare: Python's json accepts NaN literals, and "number" accepts NaN
    payload = json.loads("[0.5, NaN, 1.0]")
    # Execute / Assert
    with pytest.raises(InvalidInput, match=r"at \$\[1\]") as info:
        validate_payload(payload, NUMBERS_NO_NAN)
    assert info.value.details is not None
    assert info.value.details["path"] == "$[1]"


def test_nan_is_allowed_without_the_flag() -> None:
    schema = {"type": "array", "items": {"type": "number"}}
    # Execute / Assert: no error for NaN, while a string in the same place is refused
    assert validate_payload([0.5, math.nan], schema) is None
    with pytest.raises(InvalidInput):
        validate_payload([0.5, "nan"], schema)


def test_allow_nan_nested_in_a_subschema() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "array", "allow_nan": False}},
    }
    with pytest.raises(InvalidInput, match=r"\$\.x\[1\]\[0\]"):
        validate_payload({"x": [[1.0], [math.inf]]}, schema)


def test_check_inputs_rejects_nan_in_arrays_when_forbidden() -> None:
    x = np.ones((2, 4), dtype=np.float32)
    x[1, 2] = np.nan
    schema = {"type": "object", "allow_nan": False}
    with pytest.raises(InvalidInput, match=r"non-finite value at index \[1, 2\]"):
        check_inputs(MLP, {"x": encode_array(x)}, schema)
    check_inputs(MLP, {"x": x}, {"type": "object"})  # allowed without the flag


def test_schema_errors_name_the_failing_path() -> None:
    schema = {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "items": {"type": "object", "properties": {"age": {"type": "number"}}},
            }
        },
    }
    payload = {"rows": [{"age": 3}, {"age": "three"}]}
    with pytest.raises(InvalidInput, match=r"at \$\.rows\[1\]\.age: 'three' is not of type"):
        validate_payload(payload, schema)


def test_schema_sees_arrays_as_lists() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "array", "maxItems": 1}}}
    with pytest.raises(InvalidInput, match=r"\$\.x"):
        check_inputs(MLP, {"x": np.zeros((2, 4), dtype=np.float32)}, schema)


def test_an_invalid_schema_is_refused_up_front() -> None:
    check_schema(NUMBERS_NO_NAN)
    with pytest.raises(InvalidInput, match="not a valid JSON Schema"):
        check_schema({"type": "banana"})


def test_batch_rows_only_for_dynamic_batch_models() -> None:
    fixed = ModelSignature("onnx", [TensorSpec("x", [1, 4], "float32")], [])
    assert batch_rows(MLP, {"x": np.zeros((3, 4))}) == 3
    assert batch_rows(fixed, {"x": np.zeros((1, 4))}) is None
