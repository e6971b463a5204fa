"""`verbatim` as a user runs it, against a real service (the launcher, 2 workers): a folder of
recordings transcribed, then skipped; a corrupt file named; Ctrl-C leaving the job running, and the
command it prints picking it up; login, jobs, job and cancel."""

import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, speech, word_error_rate
from tests.e2e.support import LONGFORM, Service, start_service, stop, wait_until

pytestmark = pytest.mark.e2e

SIX = {
    "jfk.flac": "jfk/jfk.flac",
    "1089-134686-0000.flac": "librispeech/1089-134686-0000.flac",
    "1089-134686-0001.flac": "librispeech/1089-134686-0001.flac",
    "more/1089-134691-0000.flac": "librispeech/1089-134691-0000.flac",
    "more/fleurs-en-000.ogg": "fleurs_en/fleurs-en-000.ogg",
    "more/fleurs-en-001.ogg": "fleurs_en/fleurs-en-001.ogg",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    started = start_service(tmp_path_factory.mktemp("service"), workers=2)
    yield started
    stop(started)


@pytest.fixture
def env(service: Service, tmp_path: Path) -> dict[str, str]:
    """The command's environment: this service's URL and key, and a config folder of its own."""
    return os.environ | {
        "VERBATIM_URL": service.url,
        "VERBATIM_API_KEY": service.key,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "COLUMNS": "200",
    }


def verbatim(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "verbatim_client.cli", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def job_count(service: Service) -> int:
    with service.client() as client:
        total: int = client.get("/v1/jobs", params={"limit": 1}).json()["total"]
        return total


def test_a_folder_is_transcribed_then_skipped_and_a_corrupt_file_is_named(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "recordings"
    for name, source in SIX.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(speech(source), folder / name)
    before = job_count(service)

    first = verbatim("transcribe", str(folder), "--format", "srt,txt", env=env)
    assert first.returncode == 0, first.stderr
    assert "6 done, 0 skipped (outputs exist), 0 failed" in first.stderr
    for name, source in SIX.items():
        text = (folder / name).with_suffix(".txt").read_text()
        reference = speech(source).with_suffix(".txt").read_text()
        assert word_error_rate(reference, text) < 0.2, (name, text)
        srt = (folder / name).with_suffix(".srt").read_text()
        assert "-->" in srt and text.split()[0] in srt
    assert job_count(service) == before + 6
    written = {p: p.stat().st_mtime_ns for p in folder.rglob("*.srt")}

    second = verbatim("transcribe", str(folder), "--format", "srt,txt", env=env)
    assert second.returncode == 0, second.stderr
    assert "0 done, 6 skipped (outputs exist), 0 failed" in second.stderr
    assert job_count(service) == before + 6  # no job was submitted
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.srt")} == written

    (folder / "more" / "x.wav").write_bytes(os.urandom(4096))
    third = verbatim("transcribe", str(folder), "--format", "srt,txt", env=env)
    assert third.returncode == 1
    corrupt = folder / "more" / "x.wav"
    assert f"failed: {corrupt}: 415 unsupported_media_type" in third.stderr
    summary = next(line for line in third.stdout.splitlines() if str(corrupt) in line)
    assert "failed" in summary and "not a decodable audio" in summary
    assert "0 done, 6 skipped (outputs exist), 1 failed" in third.stderr


def test_ctrl_c_stops_waiting_cancels_nothing_and_the_printed_command_resumes(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    recording, out = speech(LONGFORM), tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "verbatim_client.cli",
        "transcribe",
        str(recording),
        "--format",
        "srt,txt",
    ]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def submitted() -> str | None:
        with service.client() as client:
            found = client.get("/v1/jobs", params={"q": recording.stem, "limit": 1}).json()["items"]
        return found[0]["id"] if found and found[0]["status"] in ("pending", "processing") else None

    job_id = wait_until(submitted, 60, "the upload of the long-form recording")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 130, stderr
    assert "Nothing was canceled" in stderr
    resume = f"verbatim job {job_id} --follow --format srt,txt --out {out}"
    assert resume in stderr
    with service.client() as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] in ("pending", "processing", "completed")

    followed = verbatim(*resume.split()[1:], env=env, timeout=240)
    assert followed.returncode == 0, followed.stderr
    text = (out / f"{recording.stem}.txt").read_text()
    assert word_error_rate(recording.with_suffix(".txt").read_text(), text) < 0.1
    # --follow printed the transcript chunk by chunk as it came.
    assert "[0:00]" in followed.stdout and text.split()[-1].strip(".") in followed.stdout


def test_login_stores_the_key_for_the_user_alone_and_later_commands_use_it(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    bare = {k: v for k, v in env.items() if k not in ("VERBATIM_URL", "VERBATIM_API_KEY")}
    refused = verbatim("login", "--url", service.url, "--api-key", "vbt_wrong_" + "x" * 32, env=bare)
    assert refused.returncode == 1 and "401" in refused.stderr
    stored = tmp_path / "xdg" / "verbatim" / "config.json"
    assert not stored.exists()

    done = verbatim("login", "--url", service.url, "--api-key", service.key, env=bare)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    listed = verbatim("models", env=bare)
    assert listed.returncode == 0 and "tiny.en" in listed.stdout
    # The environment wins over the stored login: a wrong key there is refused.
    wrong = verbatim("models", env=bare | {"VERBATIM_API_KEY": "vbt_wrong_" + "y" * 32})
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_jobs_job_and_cancel(service: Service, env: dict[str, str], tmp_path: Path) -> None:
    jfk = tmp_path / "jfk.flac"
    shutil.copy(speech("jfk/jfk.flac"), jfk)
    assert verbatim("transcribe", str(jfk), env=env).returncode == 0
    listed = verbatim("jobs", "--status", "completed", "--search", "my fellow", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "jfk.flac" in listed.stdout and "fleurs" not in listed.stdout

    with service.client() as client, speech(LONGFORM).open("rb") as audio:
        job_id = client.post("/v1/jobs", files={"file": ("long.wav", audio)}).json()["id"]
    shown = verbatim("job", job_id, env=env)
    assert shown.returncode == 0 and "long.wav" in shown.stdout
    canceled = verbatim("cancel", job_id, env=env)
    assert canceled.returncode == 0 and f"job {job_id}: canceled" in canceled.stdout
    again = verbatim("cancel", job_id, env=env)
    assert again.returncode == 1 and "409" in again.stderr
    with service.client() as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"


def test_a_model_the_service_does_not_offer_stops_before_any_upload(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    before = job_count(service)
    jfk = str(speech("jfk/jfk.flac"))
    result = verbatim("transcribe", jfk, "--model", "large-v9", "--out", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "no model 'large-v9' here: choose one of tiny.en" in result.stderr
    assert job_count(service) == before
