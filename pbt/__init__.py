"""PBT and the product's front door: config loading, strategies by name, the ``pbt`` command line."""

from pbt.config import RunConfig, load_config, parse_config
from pbt.settings import PBTSettings
from pbt.strategies import make_strategy
from pbt.strategy import PBTStrategy

__all__ = ["PBTSettings", "PBTStrategy", "RunConfig", "load_config", "make_strategy", "parse_config"]
