"""Settings: the only place that reads ``ZOE_*`` environment variables.

Precedence, lowest first: built-in defaults < ``$ZOE_HOME/settings.toml`` (written by the
Settings page) < environment variables. ``Settings.sources`` says where each value came from so
the Settings page can show "set by ZOE_X" and refuse to edit what the environment pins.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoe_panel.engine import defaults
from zoe_panel.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - JetPack 6 ships Python 3.10
    import tomli as tomllib

BACKENDS = ("auto", "process", "docker")
TELEMETRY = ("auto", "jetson", "nvml", "host")
RESTART_POLICIES = ("no", "on-failure")
DOCKER_GPU = ("auto", "runtime", "device-requests", "none")


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "zoe-panel"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zoe-panel"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with units in the names."""

    home: Path = field(default_factory=_default_home)
    models_dir: Path | None = None  # None = home / "models"
    cache_dir: Path = field(default_factory=_default_cache)
    llama_server: str = ""  # "" = PATH, then the cached build
    flavor: str = defaults.FLAVOR
    backend: str = "auto"
    engine_host: str = "127.0.0.1"
    engine_port: int = defaults.PORT
    engine_api_key: str = ""
    # Prometheus metrics (python -m zoe_panel exporter, or the panel process itself); 0 = off. Off
    # loopback a bearer token is required.
    exporter_host: str = "127.0.0.1"
    exporter_port: int = 9464
    exporter_token: str = ""
    chat_ui_hz: float = 15.0  # Chat redraws a streamed reply at most this often (0 = every token)
    default_max_tokens: int = 512  # the engine's cap for requests that set no max_tokens (0 = none)
    memory_floor_mib: int = 1024  # memory to keep free: the router's admission, the after-load alarm
    router_budget_mib: int = 0  # memory the router's models may hold together; 0 = available - floor
    # llama-server's prompt cache: -1 = sized at start from available memory minus the model and the
    # floor (at most a quarter of RAM, never upstream's 8 GiB on a small board); 0 = off; N = N MiB
    cache_ram_mib: int = -1
    ctx_checkpoints: int = defaults.CTX_CHECKPOINTS  # per slot, for sliding-window and recurrent models
    stop_timeout_s: float = 10.0
    rpc_probe_timeout_s: float = 3.0  # an RPC worker's answer to hello before Start names it down or busy
    start_timeout_s: float = 600.0
    restart_policy: str = "no"
    restart_max: int = 3
    restore_on_boot: bool = True
    docker_image: str = ""  # "" = the table's proposal for this L4T, or the locally built image
    docker_vllm_image: str = ""  # the vLLM flavour's image; "" = the table's for this L4T, else vllm/vllm-openai
    docker_llama_server: str = defaults.IMAGE_BINARY
    docker_shm_size: str = "8g"
    docker_gpu: str = "auto"  # auto | runtime (--runtime nvidia) | device-requests (--gpus all) | none
    docker_runtime: str = "nvidia"
    tegra_release: Path = Path("/etc/nv_tegra_release")
    jtop_socket: Path = Path("/run/jtop.sock")
    nvpmodel_conf: Path = Path("/etc/nvpmodel.conf")
    nvpmodel_status: Path = Path("/var/lib/nvpmodel/status")
    telemetry: str = "auto"
    sample_hz: float = 1.0
    sample_hz_loading: float = 10.0
    history_keep_days: float = 14.0
    ring_seconds: float = 3600.0
    memory_bandwidth_gbps: float = 0.0  # 0 = from the known-boards table or measured
    password_hash: str = ""
    session_timeout_s: float = 8 * 3600.0
    login_max_attempts: int = 5
    login_lockout_s: float = 300.0
    upload_max_mb: int = 0  # largest model upload; 0 = 64 GiB
    trusted_proxies: str = ""  # reverse proxies whose X-Forwarded-For is believed ("10.0.0.5, 10.1.0.0/16")
    disk_margin_bytes: int = 1 << 30
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def models_path(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.home / "models"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def settings_file(self) -> Path:
        return self.home / "settings.toml"

    @property
    def history_db(self) -> Path:
        return self.home / "history.sqlite"

    def replace(self, **changes: Any) -> Settings:
        return validate(dataclasses.replace(self, **changes))


# name -> environment variable; every field but the bookkeeping one can come from the env.
ENV_NAMES: dict[str, str] = {
    f.name: "ZOE_" + f.name.upper() for f in dataclasses.fields(Settings) if f.name != "sources"
}
ENV_NAMES["cache_dir"] = "ZOE_CACHE"


def _coerce(name: str, raw: Any) -> Any:
    f = {f.name: f for f in dataclasses.fields(Settings)}[name]
    kind = str(f.type)
    try:
        if "Path" in kind:
            return Path(str(raw)).expanduser() if str(raw) else None
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {raw!r} is not a valid {kind}") from None


def validate(s: Settings) -> Settings:
    """Check ranges and choices; raise ConfigError naming the setting and the allowed values."""
    checks: list[tuple[bool, str]] = [
        (s.flavor in _flavors(), f"flavor must be one of {', '.join(_flavors())}"),
        (s.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}"),
        (s.telemetry in TELEMETRY, f"telemetry must be one of {', '.join(TELEMETRY)}"),
        (s.restart_policy in RESTART_POLICIES, "restart_policy must be 'no' or 'on-failure'"),
        (s.docker_gpu in DOCKER_GPU, f"docker_gpu must be one of {', '.join(DOCKER_GPU)}"),
        (_valid_image(s.docker_image), f"docker_image {s.docker_image!r} is not a valid image reference"),
        (
            _valid_image(s.docker_vllm_image),
            f"docker_vllm_image {s.docker_vllm_image!r} is not a valid image reference",
        ),
        (1 <= s.engine_port <= 65535, "engine_port must be 1..65535"),
        (0.1 <= s.sample_hz <= 50, "sample_hz must be 0.1..50"),
        (1 <= s.sample_hz_loading <= 50, "sample_hz_loading must be 1..50"),
        (s.stop_timeout_s > 0, "stop_timeout_s must be > 0"),
        (0 <= s.exporter_port <= 65535, "exporter_port must be 0..65535 (0 = off)"),
        (0 < s.rpc_probe_timeout_s <= 60, "rpc_probe_timeout_s must be in (0, 60]"),
        (s.start_timeout_s > 0, "start_timeout_s must be > 0"),
        (0 <= s.restart_max <= 100, "restart_max must be 0..100"),
        (s.ring_seconds >= 60, "ring_seconds must be >= 60"),
        (s.history_keep_days > 0, "history_keep_days must be > 0"),
        (s.memory_bandwidth_gbps >= 0, "memory_bandwidth_gbps must be >= 0"),
        (s.login_max_attempts >= 1, "login_max_attempts must be >= 1"),
        (s.login_lockout_s > 0, "login_lockout_s must be > 0 (seconds a client is locked out)"),
        (s.session_timeout_s > 0, "session_timeout_s must be > 0 (seconds of inactivity before sign-out)"),
        (s.disk_margin_bytes >= 0, "disk_margin_bytes must be >= 0"),
        (s.upload_max_mb >= 0, "upload_max_mb must be >= 0"),
        (0 <= s.chat_ui_hz <= 120, "chat_ui_hz must be 0..120 (0 = every token)"),
        (0 <= s.default_max_tokens <= 1_048_576, "default_max_tokens must be 0..1048576 (0 = no cap)"),
        (s.memory_floor_mib >= 0, "memory_floor_mib must be >= 0"),
        (s.router_budget_mib >= 0, "router_budget_mib must be >= 0 (0 = available memory minus the floor)"),
        (-1 <= s.cache_ram_mib <= 1_048_576, "cache_ram_mib must be -1 (auto), 0 (off) or a size in MiB"),
        (0 <= s.ctx_checkpoints <= 1024, "ctx_checkpoints must be 0..1024"),
        (_valid_networks(s.trusted_proxies), "trusted_proxies must be IP addresses or networks, comma-separated"),
        (" " not in s.engine_host and s.engine_host != "", "engine_host must be an address"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"invalid setting: {message}")
    return s


_IMAGE_RE = None


def _flavors() -> tuple[str, ...]:
    from zoe_panel.engine import flavors  # the registry imports nothing of settings at run time

    return flavors.names()


def _valid_networks(text: str) -> bool:
    import ipaddress

    try:
        for item in (x.strip() for x in text.split(",")):
            if item:
                ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return True


def _valid_image(ref: str) -> bool:
    """Docker image references: [registry[:port]/]name[:tag][@digest], lowercase path components."""
    global _IMAGE_RE
    if not ref:
        return True
    if _IMAGE_RE is None:
        import re

        _IMAGE_RE = re.compile(
            r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
            r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
        )
    return bool(_IMAGE_RE.match(ref)) and len(ref) <= 255


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the settings file and the environment."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    home_raw = env.get(ENV_NAMES["home"])
    home = Path(home_raw).expanduser() if home_raw else _default_home()
    file_values = _read_settings_file(home / "settings.toml")
    for name, raw in file_values.items():
        if name in ENV_NAMES:
            try:
                values[name] = _coerce(name, raw)
            except ConfigError as e:
                raise ConfigError(f"{home / 'settings.toml'}: {e}") from None
            sources[name] = "settings.toml"
    for name, var in ENV_NAMES.items():
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var])
            sources[name] = var
    values["home"] = home
    return validate(Settings(**values, sources=sources))


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The [zoe] table of the settings file; ConfigError naming the file and the fix otherwise."""
    reset = f"fix it, or move it aside to start from the defaults: mv '{path}' '{path}.bad'"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read {path}: it is not UTF-8 text (byte {e.start}); {reset}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}; {reset}") from None
    table = data.get("zoe", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'zoe' must be a table ([zoe] with one setting per line), not {table!r}; {reset}")
    return dict(table)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a file created 0600 (it may hold a key or a hash)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_settings_file(settings: Settings, changes: dict[str, Any]) -> Settings:
    """Persist ``changes`` to the settings file (atomically) and return the new Settings.

    Values pinned by the environment cannot be changed here: the environment would win anyway,
    and silently ignoring the edit would mislead the operator.
    """
    import tomli_w

    pinned = [n for n in changes if settings.sources.get(n, "").startswith("ZOE_")]
    if pinned:
        names = ", ".join(f"{n} ({settings.sources[n]})" for n in pinned)
        raise ConfigError(f"set by the environment, cannot be changed here: {names}")
    unknown = [n for n in changes if n not in ENV_NAMES or n == "home"]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    coerced = {n: _coerce(n, v) for n, v in changes.items()}
    new = settings.replace(**coerced)  # validates before anything is written
    current = _read_settings_file(settings.settings_file)
    current.update({n: str(v) if isinstance(v, Path) else v for n, v in coerced.items()})
    write_private(settings.settings_file, tomli_w.dumps({"zoe": current}).encode())  # may hold the API key
    sources = dict(settings.sources)
    sources.update({n: "settings.toml" for n in coerced})
    return dataclasses.replace(new, sources=sources)
