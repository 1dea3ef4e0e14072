"""Config: YAML files -> validated JobSpecs. The only package that reads files and the environment."""

from beatd.config.load import (
    Config,
    find_config,
    load_config,
    load_connection,
    load_namespace,
    load_shards,
    validate_job,
)
from beatd.config.model import (
    ConfigFile,
    HistoryPolicy,
    Isolation,
    JobSpec,
    Policies,
    RedisSettings,
    RuntimeJobsSettings,
)

__all__ = [
    "Config",
    "ConfigFile",
    "HistoryPolicy",
    "Isolation",
    "JobSpec",
    "Policies",
    "RedisSettings",
    "RuntimeJobsSettings",
    "find_config",
    "load_config",
    "load_connection",
    "load_namespace",
    "load_shards",
    "validate_job",
]
