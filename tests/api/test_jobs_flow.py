"""Submit real speech through the API and run the pipeline with an in-process worker."""

import wave

import numpy as np

from core.enums import Tier
from tests.conftest import auth, create_user, speech, word_error_rate
from worker.audio import SAMPLE_RATE, decode_pcm


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


def test_a_long_silence_is_never_transcribed_and_every_time_stays_on_the_recordings_timeline(
    client, sessions, run_worker, tmp_path
):
    _, key = create_user(sessions, Tier.PRO)
    jfk = np.concatenate(list(decode_pcm(speech("jfk/jfk.flac"))))
    gap = np.zeros(8 * SAMPLE_RATE, dtype=np.int16)
    path = tmp_path / "twice.wav"
    with wave.open(str(path), "wb") as wav:  # JFK, 8 s of silence, JFK again: 30 s
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(np.concatenate([jfk, gap, jfk]).tobytes())
    job_id = submit(client, key, path).json()["id"]

    run_worker()

    done = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert done["status"] == "completed", done
    assert done["audio_duration_seconds"] == 30.0
    (chunk,) = client.get(f"/v1/jobs/{job_id}/chunks", headers=auth(key)).json()
    assert set(chunk) == {"index", "start", "end", "speech_seconds", "status", "text", "error"}
    assert chunk["speech_seconds"] < chunk["end"] - chunk["start"] - 6  # the model never heard the gap
    body = client.get(f"/v1/jobs/{job_id}/transcript?format=json", headers=auth(key)).json()
    assert body["duration"] == 30.0
    # No cue runs across the silence: each lies in the first recording or in the second.
    assert all(s["end"] <= 11.5 or s["start"] >= 18.5 for s in body["segments"]), body["segments"]
    first = " ".join(s["text"] for s in body["segments"] if s["end"] <= 11.5)
    second = " ".join(s["text"] for s in body["segments"] if s["start"] >= 18.5)
    assert "country" in first.lower() and "country" in second.lower()
