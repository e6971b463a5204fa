"""The stored login is readable by its user alone, and settings come from flags, then the
environment, then the stored login."""

import os
import stat
from pathlib import Path

import pytest

from verbatim_client import config
from verbatim_client.config import ConfigError, Login


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def test_the_login_is_saved_mode_0600_in_a_0700_folder_whatever_the_umask(home: dict[str, str]) -> None:
    path = config.config_path(home)
    previous = os.umask(0)
    try:
        config.save(path, Login("http://verbatim.test", "vbt_secret"))
    finally:
        os.umask(previous)
    assert path == Path(home["XDG_CONFIG_HOME"]) / "verbatim" / "config.json"
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert config.stored(path) == {"url": "http://verbatim.test", "api_key": "vbt_secret"}


def test_saving_over_a_file_others_could_read_leaves_it_0600(home: dict[str, str]) -> None:
    path = config.config_path(home)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    # A temporary file left by a crash, readable by others: reused, it must not keep its mode.
    leftover = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    leftover.write_text("")
    leftover.chmod(0o644)
    config.save(path, Login("http://verbatim.test", "vbt_secret"))
    assert mode(path) == 0o600
    assert not leftover.exists()


def test_the_default_folder_is_dot_config_in_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path({}) == tmp_path / ".config" / "verbatim" / "config.json"


def test_flags_win_over_the_environment_which_wins_over_the_stored_login(home: dict[str, str]) -> None:
    config.save(config.config_path(home), Login("http://stored", "stored-key"))
    env = home | {"VERBATIM_URL": "http://env", "VERBATIM_API_KEY": "env-key"}
    assert config.resolve("http://flag", "flag-key", env) == Login("http://flag", "flag-key")
    assert config.resolve(None, None, env) == Login("http://env", "env-key")
    assert config.resolve("http://flag", None, env) == Login("http://flag", "env-key")
    assert config.resolve(None, None, home) == Login("http://stored", "stored-key")
    assert config.resolve(None, "flag-key", home) == Login("http://stored", "flag-key")


def test_no_url_or_no_key_anywhere_says_how_to_give_one(home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"VERBATIM_URL, or run `verbatim login`"):
        config.resolve(None, "key", home)
    with pytest.raises(ConfigError, match="VERBATIM_API_KEY"):
        config.resolve("http://x", None, home)


def test_a_damaged_config_file_is_named_not_a_traceback(home: dict[str, str]) -> None:
    path = config.config_path(home)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json"):
        config.resolve(None, None, home)
