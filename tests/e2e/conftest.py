"""The end-to-end tests' fixtures: services started by the launcher, and fleets of processes to
hurt, each stopped when its module ends."""

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.fleet import Fleet, running_fleet
from tests.e2e.support import Service, start_service, stop


@pytest.fixture(scope="module")
def service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Service]]:
    """`service_factory(workers=N, **env)` starts a service; every one started is stopped (SIGTERM,
    and every process it started must be gone) when the module's tests are done."""
    started: list[Service] = []

    def start(workers: int, **env: str) -> Service:
        started.append(start_service(tmp_path_factory.mktemp("service"), workers, **env))
        return started[-1]

    yield start
    for service in started:
        stop(service)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Redis, the API and a database of the module's own, no worker yet: each test says how many
    workers it wants (`fleet.use_workers(n)`)."""
    with running_fleet(tmp_path_factory.mktemp("fleet")) as started:
        yield started
