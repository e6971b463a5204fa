"""The deploy files: docker-compose.yml against the Compose specification, the Procfile, the Dockerfile.

`docker-compose config` (Debian's `docker-compose` package; it needs no Docker engine) validates the
compose file against the specification's schema and prints it resolved, anchors and variables
expanded: the assertions read that, as Docker would.
"""

import json
import os
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.config import Settings
from scripts.processes import API_COMMAND
from tests.conftest import ROOT, require_service

SECRET = "s" * 48
# `uvicorn ...` as the Procfile and the Dockerfile write what the launchers run as `python -m uvicorn ...`.
UVICORN = ["uvicorn", *API_COMMAND[2:]]


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    def installed() -> None:
        if shutil.which("docker-compose") is None:
            raise RuntimeError("docker-compose is not installed (apt-get install docker-compose)")

    require_service("docker-compose", installed)
    environment = {k: v for k, v in os.environ.items() if k != "VERBATIM_JWT_SECRET"} | env
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    done = compose_config(VERBATIM_JWT_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)["services"]
    return resolved


def test_compose_has_the_production_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "minio", "minio-bucket", "migrate", "api", "worker"}
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["restart"] == services["minio-bucket"]["restart"] == "no"


def test_the_worker_scales(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert " ".join(worker["command"]) == "python -m worker.main"
    # `--scale worker=N` needs N containers that can coexist.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["stop_grace_period"] == "10m", "SIGTERM must leave time for the chunk in hand"
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "scripts.worker_health"]


def test_redis_keeps_queued_work(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_start_order_waits_on_health_and_the_one_offs(services: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "minio-bucket": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["minio-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    waited_on = {
        dependency
        for service in services.values()
        for dependency, how in service.get("depends_on", {}).items()
        if how["condition"] == "service_healthy"
    }
    assert all("healthcheck" in services[name] for name in waited_on | {"api", "worker"})


def test_the_api_runs_the_image_command_with_a_liveness_check(services: dict[str, Any]) -> None:
    api = services["api"]
    assert "command" not in api, "the API is the image's CMD"
    assert "/health/live" in " ".join(api["healthcheck"]["test"])
    assert api["ports"] == [{"published": 8000, "target": 8000}]


def test_the_app_reaches_its_stores_and_has_its_secret(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = services["worker"]["environment"]
    assert (
        env["DATABASE_URL"].startswith("postgresql+psycopg2://") and "@postgres:5432/" in env["DATABASE_URL"]
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["VERBATIM_JWT_SECRET"] == SECRET and env["VERBATIM_ENVIRONMENT"] == "production"
    assert env["VERBATIM_STORAGE_BACKEND"] == "s3" and env["VERBATIM_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert services["api"]["environment"] == env
    # The app's settings accept exactly this environment.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.storage_backend == "s3" and settings.s3_endpoint_url == "http://minio:9000"
    assert settings.database_url == env["DATABASE_URL"]


def test_the_api_believes_x_forwarded_for_only_from_the_configured_proxy(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "127.0.0.1"  # until it is set
    done = compose_config(VERBATIM_JWT_SECRET=SECRET, FORWARDED_ALLOW_IPS="10.0.0.0/8, 192.168.1.4")
    assert done.returncode == 0, done.stderr
    env = yaml.safe_load(done.stdout)["services"]["api"]["environment"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", env["FORWARDED_ALLOW_IPS"])
    assert Settings().trusted_proxies == ["10.0.0.0/8", "192.168.1.4/32"]
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "proxy.internal")  # uvicorn would match nothing, silently
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        Settings()


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    done = compose_config()
    assert done.returncode != 0
    assert "set VERBATIM_JWT_SECRET" in done.stderr


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = [line.split(":", 1) for line in lines if line.strip()]
    return {name.strip(): command.strip() for name, command in entries}


def test_procfile() -> None:
    processes = procfile()
    assert set(processes) == {"release", "web", "worker"}
    assert processes["release"] == "alembic upgrade head"
    assert processes["worker"] == "python -m worker.main"
    web = shlex.split(processes["web"])
    assert web[: len(API_COMMAND) - 1] == UVICORN, "the API as scripts/processes.py starts it"
    assert web[web.index("--port") + 1] == "${PORT:-8000}"


def test_dockerfile_runs_the_api_on_port() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert len(cmd) == 1
    command = " ".join(json.loads(cmd[0].removeprefix("CMD ")))
    assert f"exec {' '.join(UVICORN)} " in command and '--port "$PORT"' in command
    assert "    PORT=8000" in lines, "the image's default port"


def test_platform_postgres_urls_are_accepted() -> None:
    settings = Settings(database_url="postgres://u:p@db.example.com:5432/verbatim")
    assert settings.database_url == "postgresql+psycopg2://u:p@db.example.com:5432/verbatim"
