"""A platform over the local simulated venues, as ``ticklake up --simulate`` runs it (cli.py): the
simulator starts first and hands the platform its URLs, and stops after the platform."""

from __future__ import annotations

from typing import Any

from ticklake.platform import Platform
from ticklake.settings import Settings
from ticklake.simulator.server import Simulator


class SimulatedPlatform(Platform):
    """``Platform`` with ``simulator``, whose tapes are the tests' oracle."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.simulator = Simulator.from_settings(settings)

    async def start(self) -> None:
        if "feed" in self.roles:
            await self.simulator.start()
            self.settings = self.simulator.settings_for(self.settings)
        await super().start()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self.simulator.close()
