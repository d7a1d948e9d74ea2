"""Configuration: YAML loading, ``_BASE_`` inheritance, ``-o`` overrides, validation."""
from .errors import ConfigError, did_you_mean
from .loader import load_config, apply_overrides, parse_override, save_config, get_by_path

__all__ = ["ConfigError", "did_you_mean", "load_config", "apply_overrides", "parse_override",
           "save_config", "get_by_path"]
