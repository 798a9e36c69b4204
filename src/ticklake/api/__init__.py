"""The HTTP API: candles, trades and markets from the warm tier (older ranges from the cold tier),
plus health, metrics and docs."""

from ticklake.api.app import create_app
from ticklake.api.health import HealthCheck, HealthSources

__all__ = ["HealthCheck", "HealthSources", "create_app"]
