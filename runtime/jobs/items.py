"""Job items <-> DynamoDB attribute values: floats as Decimal on the way in, ints and floats on the way out.

``None`` values are left out of items and maps (DynamoDB has no use for them; a missing field reads as None).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_ddb(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_ddb(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_ddb(v) for v in value]
    return value


def _from_ddb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_ddb(v) for v in value]
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(_to_ddb(v)) for k, v in item.items() if v is not None}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_ddb(_de.deserialize(v)) for k, v in item.items()}


def serialize_value(value: Any) -> dict[str, Any]:
    """One attribute value (for update expressions)."""
    return _ser.serialize(_to_ddb(value))
