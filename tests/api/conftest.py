"""Fixtures for the API contract tests: the known trades in the shared warehouse and the app over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import CONFIGURED, CURSORS, Dataset, api_settings, build_dataset
from ticklake.api import create_app
from ticklake.settings import ValidationSettings
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return build_dataset()


@pytest.fixture
def loaded(warehouse: Client, dataset: Dataset) -> Dataset:
    """The dataset, written through every layer of an emptied warehouse."""
    plan = WarehouseWriter(warehouse, ValidationSettings()).write([], dataset.trades)
    assert len(plan.silver) == len(dataset.trades) and not plan.dead
    return dataset


@pytest.fixture
def app(warehouse: Client) -> Starlette:
    return create_app(WarehouseReader(warehouse), api_settings(), configured_markets=CONFIGURED, cursors=CURSORS)


@pytest.fixture
def make_api() -> Callable[[Starlette], httpx.AsyncClient]:
    def make(app: Starlette) -> httpx.AsyncClient:
        # raise_app_exceptions=False: the app's own 500 answer is under test, not the exception.
        return httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url="http://ticklake.test")
    return make


@pytest.fixture
async def api(app: Starlette, make_api: Callable[[Starlette], httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_api(app) as client:
        yield client


