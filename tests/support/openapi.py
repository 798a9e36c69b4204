"""Checking an answer against the API's OpenAPI document (the subset of JSON Schema it uses)."""

from __future__ import annotations

import re
from typing import Any


# -- /openapi.json ----------------------------------------------------------------------------------
def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(document: dict[str, Any], schema: Any, value: Any, where: str = "$") -> None:
    """A small validator for the subset of JSON Schema the document uses."""
    schema = _resolve(document, schema)
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                conforms(document, option, value, where)
                matches += 1
            except AssertionError:
                pass
        assert matches == 1, where
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        python: dict[str, type | tuple[type, ...]] = {
            "object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None),
            "number": (int, float)}
        assert any(isinstance(value, python[k]) and not (k == "integer" and isinstance(value, bool))
                   for k in kinds), f"{where}: {value!r} is not {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "pattern" in schema and isinstance(value, str):
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if isinstance(value, dict):
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing {schema.get('required')}"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", not properties)
        for key, item in value.items():
            if key in properties:
                conforms(document, properties[key], item, f"{where}.{key}")
            elif isinstance(extra, dict):
                conforms(document, extra, item, f"{where}.{key}")
            else:
                assert extra, f"{where}: undocumented property {key!r}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(document, schema["items"], item, f"{where}[{i}]")
