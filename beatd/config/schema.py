"""The JSON Schema of a config file, for editors (yaml-language-server) and ``beatd schema``."""

from __future__ import annotations

from typing import Any

from beatd.config.model import NAME_PATTERN, SCHEDULE_KEYS, TARGET_KEYS, ConfigFile, JobSpec, Policies

__all__ = ["config_schema"]


def config_schema() -> dict[str, Any]:
    """A draft 2020-12 JSON Schema describing the whole config file, jobs and defaults included."""
    schema = ConfigFile.model_json_schema()
    job = JobSpec.model_json_schema()
    job["properties"].pop("name", None)
    job["required"] = [key for key in job.get("required", []) if key != "name"]
    job["allOf"] = [
        {"oneOf": [{"required": [key]} for key in SCHEDULE_KEYS]},
        {"oneOf": [{"required": [key]} for key in TARGET_KEYS]},
    ]
    policies = Policies.model_json_schema()
    definitions = {**schema.pop("$defs", {}), **job.pop("$defs", {}), **policies.pop("$defs", {})}
    definitions["JobSpec"] = job
    definitions["Policies"] = policies
    schema["properties"]["jobs"] = {
        "type": "object",
        "description": "the jobs, by name",
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": {"$ref": "#/$defs/JobSpec"},
    }
    schema["properties"]["defaults"] = {"$ref": "#/$defs/Policies", "description": "applied to every job"}
    schema["patternProperties"] = {"^x-": {"description": "free extension keys for YAML anchors"}}
    schema["$defs"] = definitions
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "beatd config"
    return schema
