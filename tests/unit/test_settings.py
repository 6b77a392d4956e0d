from pathlib import Path

import pytest

from zoe_panel.errors import ConfigError
from zoe_panel.settings import load_settings, save_settings_file


def test_defaults_and_env(tmp_path: Path) -> None:
    s = load_settings({"ZOE_HOME": str(tmp_path), "ZOE_ENGINE_PORT": "9999", "ZOE_RESTORE_ON_BOOT": "off"})
    assert s.engine_port == 9999 and s.restore_on_boot is False
    assert s.models_path == tmp_path / "models" and s.sources["engine_port"] == "ZOE_ENGINE_PORT"


@pytest.mark.parametrize(
    "var, value, needle",
    [
        ("ZOE_ENGINE_PORT", "http", "not a valid int"),
        ("ZOE_ENGINE_PORT", "70000", "engine_port"),
        ("ZOE_FLAVOR", "tgi", "flavor must be one of"),
        ("ZOE_RESTORE_ON_BOOT", "maybe", "not a valid bool"),
    ],
)
def test_bad_env_values_are_named(tmp_path: Path, var: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings({"ZOE_HOME": str(tmp_path), var: value})


def test_settings_file_roundtrip_and_env_pins(tmp_path: Path) -> None:
    s = load_settings({"ZOE_HOME": str(tmp_path), "ZOE_FLAVOR": "llama-server"})
    s2 = save_settings_file(s, {"engine_port": 8123, "docker_image": "img:tag"})
    assert s2.engine_port == 8123
    again = load_settings({"ZOE_HOME": str(tmp_path)})
    assert (
        again.engine_port == 8123
        and again.docker_image == "img:tag"
        and again.sources["engine_port"] == "settings.toml"
    )
    with pytest.raises(ConfigError, match="set by the environment"):
        save_settings_file(s, {"flavor": "llama-cpp-python"})
    with pytest.raises(ConfigError, match="engine_port"):
        save_settings_file(s2, {"engine_port": 0})
    assert load_settings({"ZOE_HOME": str(tmp_path)}).engine_port == 8123  # nothing written on refusal


def test_broken_settings_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="fix it, or move it aside"):
        load_settings({"ZOE_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"zoe = 5\n", "'zoe' must be a table"),
        (b'[zoe]\nflavor = "\xff\xfe"\n', "not UTF-8"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'[zoe]\nengine_port = "abc"\n', "engine_port"),
    ],
)
def test_a_settings_file_of_the_wrong_shape_names_the_file_and_the_reset(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / "settings.toml").write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_settings({"ZOE_HOME": str(tmp_path)})
    assert says in str(e.value) and str(tmp_path / "settings.toml") in str(e.value)


@pytest.mark.parametrize(
    "env",
    [
        {"ZOE_LOGIN_LOCKOUT_S": "-5"},
        {"ZOE_SESSION_TIMEOUT_S": "-1"},
        {"ZOE_LOGIN_LOCKOUT_S": "0"},
        {"ZOE_UPLOAD_MAX_MB": "-1"},
        {"ZOE_TRUSTED_PROXIES": "10.0.0.5, not-an-ip"},
    ],
)
def test_negative_lockout_timeout_and_bad_proxies_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="invalid setting"):
        load_settings({"ZOE_HOME": str(tmp_path), **env})


def test_the_settings_file_is_written_owner_only(tmp_path: Path) -> None:
    s = load_settings({"ZOE_HOME": str(tmp_path)})
    save_settings_file(s, {"engine_api_key": "k-secret"})
    assert (tmp_path / "settings.toml").stat().st_mode & 0o777 == 0o600
