"""Pre/postprocessing adapters, in Prepare / Execute / Assert form.

Tests for stratalab/kernels/adapters/ (kept beside the model tests, which the
adapters feed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratalab.kernels.adapters import (
    POSTPROCESSORS,
    PREPROCESSORS,
    get_postprocessor,
    get_preprocessor,
)
from stratalab.kernels.adapters.numeric import pad_tokens, sigmoid, softmax, top_k
from stratalab.kernels.models.errors import InvalidInput, UnknownAdapter
from stratalab.kernels.models.runtime import load_model
from stratalab.kernels.models.signature import ModelSignature, TensorSpec
from stratalab.kernels.models.tensors import encode_array
from stratalab.kernels.models.validate import check_inputs

IMAGE = ModelSignature("onnx", [TensorSpec("pixels", [None, 3, 2, 2], "float32")], [])
TABLE = ModelSignature("onnx", [TensorSpec("x", [None, 3], "float32")], [])
TOKENS = ModelSignature(
    "onnx",
    [
        TensorSpec("input_ids", [None, None], "int64"),
        TensorSpec("attention_mask", [None, None], "int64"),
    ],
    [TensorSpec("pooled", [None, 4], "float32")],
)
ONE_TOKEN_INPUT = ModelSignature("onnx", [TensorSpec("ids", [None, 5], "int64")], [])
NO_SIG = ModelSignature("onnx", [TensorSpec("x", None, None)], [TensorSpec("y", None, None)])


# --- registry --------------------------------------------------------------------


def test_registry_holds_the_built_ins() -> None:
    assert set(PREPROCESSORS) == {"image_classification", "tabular", "text_tokens", "passthrough"}
    assert set(POSTPROCESSORS) == {
        "top_k_labels",
        "binary_classification",
        "regression",
        "passthrough",
    }
    assert get_preprocessor(None).name == "passthrough"
    assert get_postprocessor(None).name == "passthrough"


def test_unknown_adapter_lists_the_choices() -> None:
    with pytest.raises(UnknownAdapter, match="expected one of") as info:
        get_preprocessor("audio")
    assert info.value.code == "VALIDATION_ERROR"


# --- numeric core -------------------------------------------------------------------


def test_softmax_is_stable_and_sums_to_one() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]])


def test_sigmoid_does_not_overflow() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


def test_top_k_orders_best_first_and_breaks_ties_by_index() -> None:
    indices, values = top_k(np.array([[0.1, 0.4, 0.4, 0.1]]), 3)
    assert indices.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(values, [[0.4, 0.4, 0.1]])


def test_pad_tokens_pads_truncates_and_masks() -> None:
    ids, mask = pad_tokens([[5, 6, 7], [8]], max_len=2, pad_id=0)
    assert ids.tolist() == [[5, 6], [8, 0]]
    assert mask.tolist() == [[1, 1], [1, 0]]


# --- preprocessing ------------------------------------------------------------------


def test_image_hwc_uint8_becomes_normalised_nchw() -> None:
    # Prepare: one 2x2 RGB image, every pixel (255, 0, 51)
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 0], image[..., 2] = 255, 51
    params = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    # Execute
    out = get_preprocessor("image_classification")(image.tolist(), IMAGE, params)
    # Assert: JSON ints are 0-255 pixels; (v/255 - 0.5)/0.5
    pixels = out["pixels"]
    assert pixels.shape == (1, 3, 2, 2)
    assert pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[0, :, 0, 0], [1.0, -1.0, -0.6], rtol=1e-6)
    check_inputs(IMAGE, out)


def test_image_float_batch_uses_imagenet_defaults() -> None:
    images = np.full((2, 2, 2, 3), 0.485, dtype=np.float32)
    out = get_preprocessor("image_classification")({"images": images}, IMAGE, {})
    assert out["pixels"].shape == (2, 3, 2, 2)
    assert abs(float(out["pixels"][0, 0, 0, 0])) < 1e-6  # (0.485 - 0.485) / 0.229


def test_image_with_wrong_channel_stats_is_refused() -> None:
    with pytest.raises(InvalidInput, match="mean has 2 values for 3-channel images"):
        get_preprocessor("image_classification")(np.zeros((2, 2, 3)), IMAGE, {"mean": [0, 0]})


def test_tabular_dict_rows_follow_declared_column_order() -> None:
    rows = [{"b": 2, "a": 1, "c": 3}, {"c": 6, "a": 4, "b": 5}]
    out = get_preprocessor("tabular")(rows, TABLE, {"columns": ["a", "b", "c"]})
    assert out["x"].dtype == np.float32
    assert out["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_tabular_2d_list_and_single_dict() -> None:
    assert get_preprocessor("tabular")([[1, 2, 3]], TABLE, {})["x"].shape == (1, 3)
    one = get_preprocessor("tabular")({"a": 1, "b": 2, "c": 3}, TABLE, {})
    assert one["x"].tolist() == [[1, 2, 3]]


def test_tabular_names_the_bad_cell() -> None:
    with pytest.raises(InvalidInput, match="row 1 is missing column 'c'"):
        get_preprocessor("tabular")([{"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2}], TABLE, {})
    with pytest.raises(InvalidInput, match="row 0 column 'b' is not a number: 'x'"):
        get_preprocessor("tabular")([{"a": 1, "b": "x", "c": 3}], TABLE, {})


def test_tabular_fill_value_replaces_missing_cells() -> None:
    out = get_preprocessor("tabular")(
        [{"a": 1, "b": None}], TABLE, {"columns": ["a", "b", "c"], "fill_value": 0}
    )
    assert out["x"].tolist() == [[1, 0, 0]]


def test_text_tokens_pad_and_mask_for_a_two_input_model(token_onnx: Path) -> None:
    # Execute
    out = get_preprocessor("text_tokens")([[3, 4, 5], [6]], TOKENS, {})
    # Assert
    assert out["input_ids"].tolist() == [[3, 4, 5], [6, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["input_ids"].dtype == np.int64
    pooled = load_model(token_onnx, "onnx").run(out)["pooled"]
    assert pooled.shape == (2, 4)


def test_text_tokens_single_input_model_uses_its_fixed_length() -> None:
    out = get_preprocessor("text_tokens")({"input_ids": [1, 2]}, ONE_TOKEN_INPUT, {})
    assert list(out) == ["ids"]
    assert out["ids"].tolist() == [[1, 2, 0, 0, 0]]


def test_text_tokens_refuse_non_integer_tokens() -> None:
    with pytest.raises(InvalidInput, match="token 1 of sequence 0"):
        get_preprocessor("text_tokens")([1, 2.5], TOKENS, {})


def test_passthrough_accepts_raw_wire_and_named_tensors() -> None:
    pre = get_preprocessor("passthrough")
    raw = pre({"data": [1, 2, 3], "shape": [1, 3]}, TABLE, {})
    wire = pre(encode_array(np.ones((1, 3), dtype=np.float32)), TABLE, {})
    named = pre({"x": [[1, 2, 3]]}, TABLE, {})
    assert raw["x"].shape == wire["x"].shape == named["x"].shape == (1, 3)


def test_passthrough_needs_names_for_multi_input_models() -> None:
    with pytest.raises(InvalidInput, match="keyed by input name"):
        get_preprocessor("passthrough")([[1, 2]], TOKENS, {})


# --- postprocessing -----------------------------------------------------------------


def test_top_k_labels_softmax_and_labels() -> None:
    # Prepare
    logits = {"y": np.array([[2.0, 1.0, 0.1], [0.0, 3.0, 0.0]], dtype=np.float32)}
    # Execute
    result = get_postprocessor("top_k_labels")(
        logits, NO_SIG, {"k": 2, "labels": ["cat", "dog", "bird"]}
    )
    # Assert
    first, second = result["predictions"]
    assert [p["label"] for p in first] == ["cat", "dog"]
    assert [p["label"] for p in second] == ["dog", "cat"]
    expected = softmax(logits["y"])[0, 0]
    assert first[0]["score"] == pytest.approx(float(expected))
    assert first[0]["index"] == 0


def test_top_k_without_labels_uses_indices_and_caps_k() -> None:
    result = get_postprocessor("top_k_labels")({"y": np.array([0.2, 0.8])}, NO_SIG, {"k": 10})
    assert [p["label"] for p in result["predictions"][0]] == ["1", "0"]


def test_binary_classification_from_logits() -> None:
    result = get_postprocessor("binary_classification")(
        {"y": np.array([[2.0], [-2.0]])}, NO_SIG, {"labels": ["ham", "spam"]}
    )
    first, second = result["predictions"]
    assert first["label"] == "spam"
    assert first["probability"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert second["label"] == "ham"


def test_binary_classification_from_two_class_scores_and_threshold() -> None:
    result = get_postprocessor("binary_classification")(
        {"y": np.array([[0.0, 0.0]])}, NO_SIG, {"threshold": 0.6}
    )
    assert result["predictions"] == [{"label": "negative", "probability": 0.5}]


def test_binary_classification_refuses_three_classes() -> None:
    with pytest.raises(InvalidInput, match="got shape"):
        get_postprocessor("binary_classification")({"y": np.zeros((1, 3))}, NO_SIG, {})


def test_regression_flattens_single_targets() -> None:
    post = get_postprocessor("regression")
    assert post({"y": np.array([[1.5], [2.5]])}, NO_SIG, {}) == {"predictions": [1.5, 2.5]}
    multi = post({"y": np.array([[1.0, 2.0]])}, NO_SIG, {})
    assert multi == {"predictions": [[1.0, 2.0]]}


def test_passthrough_returns_raw_tensors() -> None:
    post = get_postprocessor("passthrough")
    one = post({"y": np.array([[0.8, 0.2]], dtype=np.float32)}, NO_SIG, {})
    assert one == {"data": [pytest.approx(0.8), pytest.approx(0.2)], "shape": [1, 2]}
    two = post({"a": np.zeros(1), "b": np.ones((1, 1))}, NO_SIG, {})
    assert two == {"a": {"data": [0.0], "shape": [1]}, "b": {"data": [1.0], "shape": [1, 1]}}


def test_postprocessor_can_read_a_named_output() -> None:
    outputs = {"logits": np.array([[0.0, 5.0]]), "embedding": np.zeros((1, 8))}
    result = get_postprocessor("top_k_labels")(outputs, NO_SIG, {"output": "logits", "k": 1})
    assert result["predictions"][0][0]["index"] == 1
    with pytest.raises(InvalidInput, match="no output 'nope'"):
        get_postprocessor("regression")(outputs, NO_SIG, {"output": "nope"})
