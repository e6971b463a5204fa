"""The command's exit codes: 0 done or skipped, 1 a file failed (named), 2 a wrong command line or
no settings; and that skipping needs no service at all."""

from pathlib import Path

import pytest

from tests.e2e.support import free_port
from verbatim_client.cli import main


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VERBATIM_URL", raising=False)
    monkeypatch.delenv("VERBATIM_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def nowhere() -> list[str]:
    """Settings of a service that is not there: a command that calls it fails to connect."""
    return ["--url", f"http://127.0.0.1:{free_port()}", "--api-key", "vbt_key"]


@pytest.fixture
def talk(tmp_path: Path) -> Path:
    path = tmp_path / "talk.wav"
    path.write_bytes(b"RIFF audio")
    return path


@pytest.mark.parametrize("flags", [["--format", "srt,docx"], ["--format", ","], ["--jobs", "0"]])
def test_a_wrong_command_line_exits_2(
    flags: list[str], talk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["transcribe", str(talk), *flags])
    assert exited.value.code == 2
    assert "verbatim transcribe: error" in capsys.readouterr().err


def test_no_service_configured_exits_2_saying_how_to_set_one(
    talk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(talk)]) == 2
    assert "run `verbatim login`" in capsys.readouterr().err


def test_files_whose_outputs_all_exist_are_skipped_without_calling_the_service(
    talk: Path, nowhere: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (talk.parent / "talk.srt").write_text("1\n")
    (talk.parent / "talk.txt").write_text("text")
    assert main(["transcribe", str(talk), "--format", "srt,txt", *nowhere]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().err


def test_force_transcribes_again_and_a_service_out_of_reach_exits_1(
    talk: Path, nowhere: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (talk.parent / "talk.srt").write_text("1\n")
    assert main(["transcribe", str(talk), "--force", *nowhere]) == 1
    assert "cannot reach the service" in capsys.readouterr().err


def test_a_missing_file_exits_1_naming_it_and_the_rest_still_counts(
    talk: Path, tmp_path: Path, nowhere: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (talk.parent / "talk.srt").write_text("1\n")
    missing = tmp_path / "missing.wav"
    assert main(["transcribe", str(talk), str(missing), *nowhere]) == 1
    captured = capsys.readouterr()
    assert f"failed: {missing}: no such file or folder" in captured.err
    assert "0 done, 1 skipped (outputs exist), 1 failed" in captured.err
    assert "missing.wav" in captured.out  # the summary table


def test_other_commands_out_of_reach_exit_1(nowhere: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", *nowhere]) == 1
    assert "cannot reach the service" in capsys.readouterr().err
