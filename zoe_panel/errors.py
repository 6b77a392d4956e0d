"""The one error tree of Zoe Panel.

Every message says what happened and what to do about it; pages show ``str(e)`` as is.

::

    ZoePanelError
    ├── ConfigError              bad setting or argument (value, range, allow-list)
    ├── ModelStoreError          models folder: missing, invalid GGUF, unsafe path, disk space
    │   └── InvalidModelError    a file that is not a loadable GGUF
    ├── EstimateError            metadata lacks what the memory estimate needs
    ├── EngineError              engine lifecycle
    │   ├── EngineBusyError      an engine already runs / another start holds the lock
    │   ├── EngineNotRunning     stop/chat with nothing running
    │   ├── BinaryNotFound       llama-server / python flavour not installed
    │   ├── PortInUseError       the engine port is taken
    │   ├── WorkerUnavailable    an RPC worker is down, busy or of another protocol version
    │   └── DockerUnavailable    daemon unreachable, image or runtime missing
    ├── TelemetryUnavailable     a telemetry source cannot run on this machine
    ├── ChatError                chat request failed (engine down, context overflow, ...)
    ├── DownloadError            Hub download failed / cancelled / checksum mismatch
    └── AuthError                login refused, locked out, no password set for LAN use
"""

from __future__ import annotations


class ZoePanelError(Exception):
    """Base of every error the panel reports to a user."""


class ConfigError(ZoePanelError):
    pass


class ModelStoreError(ZoePanelError):
    pass


class InvalidModelError(ModelStoreError):
    pass


class EstimateError(ZoePanelError):
    pass


class EngineError(ZoePanelError):
    pass


class WorkerUnavailable(EngineError):
    """An RPC worker the engine needs does not answer as it must; the message names each node."""


class EngineBusyError(EngineError):
    pass


class EngineNotRunning(EngineError):
    pass


class BinaryNotFound(EngineError):
    pass


class PortInUseError(EngineError):
    pass


class DockerUnavailable(EngineError):
    pass


class TelemetryUnavailable(ZoePanelError):
    pass


class ChatError(ZoePanelError):
    pass


class DownloadError(ZoePanelError):
    pass


class AuthError(ZoePanelError):
    pass
