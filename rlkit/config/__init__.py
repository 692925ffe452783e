"""Recipe configuration: typed schema, YAML loading, dotted command-line overrides.

Imports without torch so that `rlkit train` can reject a bad recipe before anything starts.
"""

from rlkit.config.loader import ConfigError, load_recipe, parse_overrides, to_dict
from rlkit.config.schema import RecipeConfig

__all__ = ["ConfigError", "RecipeConfig", "load_recipe", "parse_overrides", "to_dict"]
