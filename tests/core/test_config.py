import pytest
from pydantic import SecretStr, ValidationError

from core.config import Settings
from core.enums import Backend


def test_the_assemblyai_backend_refuses_to_start_without_a_key(tmp_path):
    with pytest.raises(ValidationError, match="VERBATIM_ASSEMBLYAI_API_KEY must be set"):
        Settings(data_dir=tmp_path, transcription_backend="assemblyai")


def test_each_backend_has_its_own_chunk_length(monkeypatch, tmp_path):
    monkeypatch.setenv("VERBATIM_TRANSCRIPTION_BACKEND", "assemblyai")
    monkeypatch.setenv("VERBATIM_ASSEMBLYAI_API_KEY", "k" * 32)
    settings = Settings(data_dir=tmp_path)
    assert settings.assemblyai_api_key == SecretStr("k" * 32)
    assert settings.assemblyai_base_url == "https://api.assemblyai.com"
    assert settings.assemblyai_chunk_minutes == 10
    assert settings.chunk_seconds_for(Backend.ASSEMBLYAI) == 600
    local = Settings(data_dir=tmp_path, transcription_backend="local", chunk_seconds=30)
    assert local.chunk_seconds_for(Backend.LOCAL) == 30


def test_a_chunk_is_at_most_the_30_seconds_the_local_model_hears_at_once(tmp_path):
    assert Settings(data_dir=tmp_path, chunk_seconds=30).chunk_seconds == 30
    with pytest.raises(ValidationError, match="chunk_seconds"):
        Settings(data_dir=tmp_path, chunk_seconds=30.5)


def test_the_engine_settings_default_to_what_the_machine_has(tmp_path):
    s = Settings(data_dir=tmp_path)
    engine = (s.whisper_device, s.whisper_device_index, s.whisper_compute_type, s.whisper_batch_size)
    assert engine == ("auto", "0", "auto", 0)
    assert s.whisper_word_timestamps is False


def test_the_engine_settings_read_the_environment(monkeypatch, tmp_path):
    for name, value in {
        "DEVICE": "cuda",
        "DEVICE_INDEX": "0,1",
        "COMPUTE_TYPE": "int8_float16",
        "BATCH_SIZE": "24",
        "WORD_TIMESTAMPS": "true",
    }.items():
        monkeypatch.setenv(f"VERBATIM_WHISPER_{name}", value)
    s = Settings(data_dir=tmp_path)
    assert (s.whisper_device, s.whisper_device_index, s.whisper_compute_type) == (
        "cuda",
        "0,1",
        "int8_float16",
    )
    assert (s.whisper_batch_size, s.whisper_word_timestamps) == (24, True)


@pytest.mark.parametrize(
    ("field", "value"), [("whisper_device", "tpu"), ("whisper_batch_size", -1), ("whisper_batch_size", 257)]
)
def test_engine_settings_out_of_range_are_refused(tmp_path, field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(data_dir=tmp_path, **{field: value})
