"""The local relay: a Hybrid Connections service that runs on one machine."""
from .config import HybridConnectionConfig, Limits, RelayConfig, load_config, parse_config
from .core import Relay
from .service import DEFAULT_LISTEN, RelayService

__all__ = [
    "DEFAULT_LISTEN",
    "HybridConnectionConfig",
    "Limits",
    "Relay",
    "RelayConfig",
    "RelayService",
    "load_config",
    "parse_config",
]
