"""The whole service on S3 storage: a real job through the API and an in-process worker, with
every object in a bucket of a real S3-compatible server on loopback (moto's)."""

import pytest

from core.config import Settings
from core.enums import Tier
from tests import s3
from tests.api.test_jobs_flow import submit
from tests.conftest import auth, create_user, speech


@pytest.fixture
def stack() -> str:
    return "embedded"  # storage is what differs here; the SQL/Redis stacks are covered elsewhere


@pytest.fixture
def settings(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Settings:
    return settings.model_copy(
        update={"storage_backend": "s3", "s3_endpoint_url": s3_endpoint, "s3_bucket": s3_bucket}
    )


def test_a_job_runs_on_s3_storage(client, sessions, run_worker, settings, s3_endpoint, s3_bucket):
    _, key = create_user(sessions, Tier.PRO)
    response = submit(client, key, speech("jfk/jfk.flac"))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    run_worker()

    done = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert done["status"] == "completed", done
    text = client.get(f"/v1/jobs/{job_id}/transcript?format=txt", headers=auth(key)).text
    assert "country" in text.lower(), text

    keys = s3.object_keys(s3.client(s3_endpoint), s3_bucket)
    assert f"jobs/{job_id}/source.flac" in keys
    assert f"jobs/{job_id}/transcript.txt" in keys
    assert all(k.startswith(f"jobs/{job_id}/") for k in keys), keys
    assert not (settings.data_dir / "storage").exists()  # nothing went to the local backend
