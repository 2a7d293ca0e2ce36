"""Input validation: JSON Schema over what the client sent, then tensor checks.

Errors say what was expected, in the model's terms
(``input 'x' expected shape [None, 4] (float32), got [2, 3]``), because the
person reading them is a data scientist calling the model from a notebook.

NaN handling
------------
JSON Schema has no notion of NaN, and Python's ``json`` module accepts ``NaN``
and ``Infinity`` literals, so ``{"type": "number"}`` lets them through. A schema
opts out with the StrataLab keyword ``"allow_nan": false``, which may appear at
the top of the schema or in any subschema and rejects NaN and +/-Infinity
anywhere below the place it appears. Without the keyword, non-finite values are
allowed (some models use NaN as a missing-value marker).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import numpy as np
from jsonschema import ValidationError
from jsonschema.exceptions import SchemaError, best_match

from stratalab.kernels.models.errors import InvalidInput
from stratalab.kernels.models.signature import ModelSignature, TensorSpec, format_shape
from stratalab.kernels.models.tensors import jsonable, to_array

logger = logging.getLogger(__name__)

#: Longest message taken from a jsonschema error (they can quote the instance).
_MAX_MESSAGE = 300


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` when ``schema`` is not a valid JSON Schema.

    Called when a model's ``input_schema`` is uploaded or patched, so a broken
    schema is refused once instead of failing every inference later.
    """
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(
            f"input_schema is not a valid JSON Schema: {exc.message[:_MAX_MESSAGE]}",
            details={"schema_path": "/".join(str(p) for p in exc.path)},
        ) from exc


def validate_payload(payload: Any, schema: Mapping[str, Any] | None) -> None:
    """Validate the client's input, as sent, against the model's ``input_schema``.

    Arrays (numpy or wire form) are validated as the nested lists a JSON
    client would have sent. The error names the failing location as a JSON
    path (``$.rows[2].age``).
    """
    if schema is None:
        return
    validator = _validator_class(schema)(schema)
    error = best_match(validator.iter_errors(jsonable(payload)))
    if error is None:
        return
    location = error.json_path
    raise InvalidInput(
        f"input does not match input_schema at {location}: {error.message[:_MAX_MESSAGE]}",
        details={"path": location, "schema_path": "/".join(str(p) for p in error.schema_path)},
    )


def check_inputs(
    signature: ModelSignature,
    inputs: Mapping[str, Any],
    input_schema: Mapping[str, Any] | None = None,
    *,
    max_batch: int | None = None,
) -> dict[str, np.ndarray]:
    """Check named inputs against the signature and return them as model-ready arrays.

    Parameters
    ----------
    signature:
        The model's signature.
    inputs:
        Input name to tensor, in any form :func:`~stratalab.kernels.models.tensors.to_array`
        accepts.
    input_schema:
        When given, ``inputs`` (with arrays as nested lists) must validate
        against it; ``"allow_nan": false`` at its top also rejects non-finite
        values in the decoded arrays without converting them to lists.
    max_batch:
        Largest accepted first dimension, if limited.

    Returns
    -------
    The inputs in signature order, cast to the model's dtypes where the cast
    keeps the kind of number (float64 to float32, int64 to float32), since
    JSON clients cannot say "float32".

    Raises
    ------
    InvalidInput
        Naming the input and what was expected.
    """
    if input_schema is not None:
        if input_schema.get("allow_nan") is False:
            # The arrays are checked below with numpy; only the rest goes
            # through jsonschema, to avoid a Python object per element.
            rest = {k: v for k, v in input_schema.items() if k != "allow_nan"}
            validate_payload(inputs, rest)
        else:
            validate_payload(inputs, input_schema)
    expected = signature.input_names
    unexpected = sorted(set(inputs) - set(expected))
    if unexpected:
        raise InvalidInput(
            f"unexpected input {unexpected[0]!r}; the model takes {expected}",
            details={"unexpected": unexpected, "expected": expected},
        )
    arrays: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in inputs:
            raise InvalidInput(
                f"missing input {spec.name!r}; the model takes {expected}",
                details={"missing": spec.name, "expected": expected},
            )
        array = _cast(spec, to_array(inputs[spec.name], name=f"input {spec.name!r}"))
        _check_shape(spec, array)
        if input_schema is not None and input_schema.get("allow_nan") is False:
            _check_finite(spec.name, array)
        arrays[spec.name] = array
    _check_batch(signature, arrays, max_batch)
    return arrays


def batch_rows(signature: ModelSignature, arrays: Mapping[str, np.ndarray]) -> int | None:
    """Rows along axis 0 when the request can be micro-batched, else ``None``."""
    if not signature.batch_dynamic or not arrays:
        return None
    rows = {int(a.shape[0]) for a in arrays.values() if a.ndim >= 1}
    if len(rows) != 1 or any(a.ndim == 0 for a in arrays.values()):
        return None
    return rows.pop()


def _cast(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """Cast to the spec's dtype when the cast keeps the kind of number."""
    target = _numpy_dtype(spec.dtype)
    if target is None:
        # Unknown dtype (TorchScript): JSON floats become float32, torch's default.
        return array.astype(np.float32) if array.dtype == np.float64 else array
    if array.dtype == target:
        return array
    if np.can_cast(array.dtype, target, casting="same_kind"):
        return array.astype(target)
    raise InvalidInput(
        f"input {spec.name!r} expected dtype {target.name}, got {array.dtype.name}",
        details={"input": spec.name, "expected_dtype": target.name, "dtype": array.dtype.name},
    )


def _check_shape(spec: TensorSpec, array: np.ndarray) -> None:
    """Rank and fixed dimensions must match; dynamic (``None``) dims accept any size."""
    if spec.shape is None:
        return
    got = list(array.shape)
    ok = len(got) == len(spec.shape) and all(
        want is None or want == have for want, have in zip(spec.shape, got, strict=True)
    )
    if not ok:
        raise InvalidInput(
            f"input {spec.name!r} expected shape {spec.describe()}, got {format_shape(got)}",
            details={"input": spec.name, "expected_shape": spec.shape, "shape": got},
        )


def _check_finite(name: str, array: np.ndarray) -> None:
    """Reject NaN/Inf in a float array, naming the first offending index."""
    if array.dtype.kind != "f":
        return
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = [int(i) for i in bad[0]]
        raise InvalidInput(
            f"input {name!r} contains a non-finite value at index {index}",
            details={"input": name, "index": index},
        )


def _check_batch(
    signature: ModelSignature, arrays: Mapping[str, np.ndarray], max_batch: int | None
) -> None:
    """Inputs with a dynamic first dim must agree on it, and respect ``max_batch``."""
    dynamic = {
        spec.name: int(arrays[spec.name].shape[0])
        for spec in signature.inputs
        if spec.shape and spec.shape[0] is None and arrays[spec.name].ndim >= 1
    }
    if len(set(dynamic.values())) > 1:
        (a, na), (b, nb) = sorted(dynamic.items(), key=lambda kv: kv[1])[::-1][:2]
        raise InvalidInput(
            f"inputs disagree on the batch dimension: {a!r} has {na} rows, {b!r} has {nb}",
            details={"rows": dynamic},
        )
    rows = max(dynamic.values(), default=None)
    if rows == 0:
        raise InvalidInput("the batch is empty (0 rows)")
    if max_batch is not None and rows is not None and rows > max_batch:
        raise InvalidInput(
            f"batch of {rows} rows exceeds the limit of {max_batch}",
            details={"rows": rows, "max_batch": max_batch},
        )


def _numpy_dtype(name: str | None) -> np.dtype[Any] | None:
    """numpy dtype for a signature dtype name; ``None`` when unknown or non-numeric."""
    if name is None:
        return None
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    return dtype if dtype.kind in "biuf" else None


def _allow_nan(
    validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """The ``allow_nan`` keyword: with ``false``, no NaN/Infinity anywhere below."""
    if value is not False:
        return
    for path, number in _non_finite(instance, ()):
        yield ValidationError(f"{number} is not allowed (allow_nan is false)", path=deque(path))
        return


def _non_finite(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], float]]:
    """Paths to the non-finite floats in a JSON-like value, depth first."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


#: Extended validator classes by base class; ``extend`` builds a class, so reuse it.
_EXTENDED: dict[Any, Any] = {}


def _validator_class(schema: Mapping[str, Any]) -> Any:
    """The validator for the schema's ``$schema`` (2020-12 by default) plus ``allow_nan``."""
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    extended = _EXTENDED.get(base)
    if extended is None:
        extended = jsonschema.validators.extend(base, {"allow_nan": _allow_nan})
        _EXTENDED[base] = extended
    return extended
