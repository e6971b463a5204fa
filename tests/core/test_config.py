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
