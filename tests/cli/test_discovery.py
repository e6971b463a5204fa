"""What `verbatim transcribe` finds to do, and where each transcript goes, before any network."""

from pathlib import Path

import pytest

from verbatim_client.discovery import plan, url_filename, url_stem


def touch(path: Path, body: bytes = b"audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    for name in ("a.wav", "b.MP3", "notes.txt", "c.srt", ".hidden.wav", "._a.wav"):
        touch(root / name)
    touch(root / "day2" / "d.flac")
    touch(root / "day2" / "e.mp4")
    touch(root / "day2" / "cover.jpg")
    touch(root / ".trash" / "old.wav")
    return root


def test_a_folder_gives_its_audio_and_video_recursively_and_no_hidden_or_other_files(folder: Path) -> None:
    found = plan([str(folder)], ["srt"], None)
    assert [Path(s.label).relative_to(folder).as_posix() for s in found.sources] == [
        "a.wav",
        "b.MP3",
        "day2/d.flac",
        "day2/e.mp4",
    ]
    assert found.problems == []


def test_outputs_go_beside_each_input_named_after_it(folder: Path) -> None:
    sources = plan([str(folder)], ["srt", "txt"], None).sources
    assert sources[2].outputs == {"srt": folder / "day2" / "d.srt", "txt": folder / "day2" / "d.txt"}


def test_with_out_the_folders_sub_folders_are_kept(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sources = plan([str(folder), str(folder / "a.wav")], ["vtt"], out).sources
    assert [s.outputs["vtt"] for s in sources] == [
        out / "a.vtt",
        out / "b.vtt",
        out / "day2" / "d.vtt",
        out / "day2" / "e.vtt",
    ]


def test_a_file_named_on_the_command_line_is_taken_whatever_its_suffix(tmp_path: Path) -> None:
    odd = touch(tmp_path / "interview.data")
    [source] = plan([str(odd)], ["txt"], None).sources
    assert source.location == odd and source.outputs == {"txt": tmp_path / "interview.txt"}


def test_a_file_named_twice_is_transcribed_once(folder: Path) -> None:
    found = plan([str(folder / "a.wav"), str(folder), f"{folder}/../recordings/a.wav"], ["srt"], None)
    assert [Path(s.label).name for s in found.sources].count("a.wav") == 1
    assert found.problems == []


def test_two_inputs_that_would_write_the_same_output_fail_the_second(tmp_path: Path) -> None:
    first, second = touch(tmp_path / "talk.wav"), touch(tmp_path / "talk.mp3")
    found = plan([str(first), str(second)], ["srt"], None)
    assert [s.label for s in found.sources] == [str(first)]
    [problem] = found.problems
    assert problem.label == str(second) and str(first) in problem.reason


def test_a_missing_path_and_a_folder_without_media_are_problems_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    touch(empty / "readme.txt")
    found = plan([str(tmp_path / "nope.wav"), str(empty)], ["srt"], None)
    assert found.sources == []
    assert [(p.label, p.reason) for p in found.problems] == [
        (str(tmp_path / "nope.wav"), "no such file or folder"),
        (str(empty), "no audio or video files in this folder"),
    ]


def test_a_url_is_named_after_its_path_and_written_in_out_or_here(tmp_path: Path) -> None:
    url = "https://example.com/media/Board%20meeting.m4a?token=abc"
    [source] = plan([url], ["srt"], tmp_path).sources
    assert source.location == url
    assert source.outputs == {"srt": tmp_path / "Board meeting.srt"}
    assert url_filename(url) == "Board meeting.m4a"
    assert url_stem("https://example.com/") == "audio"
    # An encoded path cannot climb out of the output folder.
    assert url_stem("https://example.com/a/..%2F..%2Fetc%2Fpasswd") == "passwd"


def test_a_file_is_done_only_when_every_output_exists(tmp_path: Path) -> None:
    [source] = plan([str(touch(tmp_path / "a.wav"))], ["srt", "txt"], None).sources
    assert not source.done()
    touch(tmp_path / "a.srt", b"1\n")
    assert not source.done()  # a run stopped between the two downloads does this file again
    touch(tmp_path / "a.txt", b"text")
    assert source.done()
