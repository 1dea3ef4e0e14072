"""The OpenAPI 3.1 document of ``/api/v1``, built from the endpoint table (one source for routes and docs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beatd.web.views import Endpoint

__all__ = ["openapi_document"]

_TOKENS = "BEATD_WEB_READ_TOKEN or BEATD_WEB_ADMIN_TOKEN"


def openapi_document(endpoints: Sequence[Endpoint], prefix: str) -> dict[str, Any]:
    """The document: one operation per endpoint, with its parameters, role and the errors it answers."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "description": f"Needs the {endpoint.role} role." + (" Pages post here as forms (with the CSRF token)."
                                                                  if endpoint.method == "POST" else ""),
            "parameters": [
                {"name": p.name, "in": p.where, "required": p.where == "path", "description": p.description,
                 "schema": {"type": p.kind}}
                for p in endpoint.params if p.where != "body"
            ],
            "responses": {
                "200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "bad parameter (the error says which)"},
                "401": {"description": "no token"},
                "403": {"description": "wrong role, or a cookie session without its CSRF token"},
                "404": {"description": "no such job, run or fire"},
                "503": {"description": "Redis unavailable"},
            },
            "security": [{"bearer": []}, {"cookie": []}],
        }  # fmt: skip
        body = [p for p in endpoint.params if p.where == "body"]
        if endpoint.method == "POST":
            properties = {p.name: {"description": p.description} for p in body}
            schema = {"type": "object", "properties": properties}
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": schema},
                    "application/x-www-form-urlencoded": {"schema": schema},
                },
            }
        paths.setdefault(prefix + endpoint.path.replace(":path}", "}"), {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "beatd web API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": _TOKENS},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "beatd_session"},
        }},
    }  # fmt: skip
