"""The /docs page: the OpenAPI document rendered to one self-contained HTML page.

Rendered on the server, once, with no script and no CDN: ticklake often runs where there is no
internet, and the page must still work there.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2.5rem;border-bottom:1px solid #ddd}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
.method{display:inline-block;background:#2463eb;color:#fff;border-radius:4px;padding:0 .5rem;margin-right:.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid #eee;padding:.3rem .5rem}
details{margin:.3rem 0}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto}
"""


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (one level)."""
    if isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return target
    return node


def _schema_text(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_schema_text(s) for s in schema["oneOf"])
    kind = schema.get("type", "")
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    if "minimum" in schema or "maximum" in schema:
        text += f" {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    return text


def _parameters_table(document: dict[str, Any], parameters: list[Any]) -> str:
    if not parameters:
        return "<p>No parameters.</p>"
    rows = []
    for ref in parameters:
        param = _resolve(document, ref)
        schema = param.get("schema", {})
        default = schema.get("default")
        rows.append(
            f"<tr><td><code>{escape(param['name'])}</code>{' <b>required</b>' if param.get('required') else ''}"
            f"</td><td>{escape(_schema_text(schema))}</td>"
            f"<td>{'' if default is None else f'<code>{escape(str(default))}</code>'}</td>"
            f"<td>{escape(param.get('description', ''))}</td></tr>"
        )
    return ("<table><tr><th>parameter</th><th>accepted</th><th>default</th><th>meaning</th></tr>"
            + "".join(rows) + "</table>")


def _responses_list(document: dict[str, Any], responses: dict[str, Any]) -> str:
    items = []
    for status, ref in responses.items():
        response = _resolve(document, ref)
        detail = ""
        for media_type, content in response.get("content", {}).items():
            schema = content.get("schema", {})
            name = schema.get("$ref", "").rsplit("/", 1)[-1]
            if name:
                shown = json.dumps(_resolve(document, schema), indent=2)
                detail += (f"<details><summary><code>{escape(media_type)}</code>: {escape(name)}</summary>"
                           f"<pre>{escape(shown)}</pre></details>")
            else:
                detail += f" <code>{escape(media_type)}</code>"
        items.append(f"<li><b>{escape(status)}</b> {escape(response.get('description', ''))}{detail}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_docs(document: dict[str, Any]) -> str:
    info = document["info"]
    sections = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            sections.append(
                f"<h2 id=\"{escape(operation.get('operationId', path))}\"><span class=\"method\">"
                f"{escape(method.upper())}</span><code>{escape(path)}</code></h2>"
                f"<p>{escape(operation.get('summary', ''))}</p>"
                f"<h3>Parameters</h3>{_parameters_table(document, operation.get('parameters', []))}"
                f"<h3>Responses</h3>{_responses_list(document, operation.get('responses', {}))}"
            )
    schemas = "".join(
        f"<details><summary><code>{escape(name)}</code></summary><pre>{escape(json.dumps(schema, indent=2))}"
        f"</pre></details>"
        for name, schema in document["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(info['title'])} API</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        "<p>Machine-readable: <a href=\"/openapi.json\"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>"
        + "".join(sections)
        + f"<h2>Schemas</h2>{schemas}</body></html>"
    )
