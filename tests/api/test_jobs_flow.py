"""Submit real speech through the API and run the pipeline with an in-process worker."""

from core.enums import Tier
from tests.conftest import auth, create_user, speech, word_error_rate


def submit(client, key, path, **fields):
    with path.open("rb") as f:
        return client.post("/v1/jobs", headers=auth(key), files={"file": (path.name, f)}, data=fields)


def test_jfk_transcribed_end_to_end(client, sessions, run_worker):
    _, key = create_user(sessions, Tier.PRO)
    audio = speech("jfk/jfk.flac")

    response = submit(client, key, audio)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "pending"
    assert job["priority"] == "normal"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"

    pending = client.get(f"/v1/jobs/{job['id']}/transcript", headers=auth(key))
    assert pending.status_code == 202
    assert pending.headers["retry-after"]

    run_worker()

    done = client.get(f"/v1/jobs/{job['id']}", headers=auth(key)).json()
    assert done["status"] == "completed", done
    assert done["progress"] == {"chunks_total": 1, "chunks_completed": 1, "percent": 100.0}
    assert abs(done["audio_duration_seconds"] - 11.0) < 0.1
    assert done["language"] == "en"

    text = client.get(f"/v1/jobs/{job['id']}/transcript?format=txt", headers=auth(key)).text
    reference = (audio.parent / "jfk.txt").read_text()
    assert word_error_rate(reference, text) < 0.1, text

    body = client.get(f"/v1/jobs/{job['id']}/transcript?format=json", headers=auth(key)).json()
    assert body["text"] == text.strip()
    assert body["segments"] and all(s["end"] > s["start"] for s in body["segments"])
    assert body["segments"][-1]["end"] <= 11.0

    srt = client.get(f"/v1/jobs/{job['id']}/transcript?format=srt", headers=auth(key)).text
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = client.get(f"/v1/jobs/{job['id']}/transcript?format=vtt", headers=auth(key)).text
    assert vtt.startswith("WEBVTT\n\n00:00:0")
