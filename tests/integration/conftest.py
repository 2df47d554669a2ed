"""Fixtures of the integration tests beyond the database ones in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proxy_fixtures import DATA, ProxyWorld
from shard_fixtures import ROWS, SPLIT, Shard, shard_database

from pldiffix_proxy.listener import running_in_thread


@pytest.fixture(scope="module")
def proxy_world(module_db) -> Iterator[ProxyWorld]:
    """The labeled data set, an anonymized_trusted analyst, a direct role, and a front."""
    module_db.admin.execute(DATA)
    analyst = module_db.create_role("anonymized_trusted", prefix="analyst")
    direct = module_db.create_role("direct", prefix="direct")
    module_db.admin.execute(f'GRANT SELECT ON customers TO "{direct}"')
    with running_in_thread(module_db.dsn(), startup_timeout=2.0, max_message=1 << 20) as front:
        yield ProxyWorld(module_db, front, analyst, direct)


@pytest.fixture(scope="session")
def shard(server_dsn) -> Iterator[Shard]:
    """The shard database holding ROWS with aid >= SPLIT (tests/helpers/shard_fixtures.py). Tests
    only read it, through its reader role from their own database, so one serves them all."""
    with shard_database(server_dsn, ROWS, f"aid >= {SPLIT}") as created:
        yield created
