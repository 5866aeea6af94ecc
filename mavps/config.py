"""Settings: the defaults (defaults.py), then the config file, then MAVPS_* variables, then flags.

A bad value is a ConfigError naming the key and where it came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from . import defaults as D
from .errors import ConfigError

_FLOATS = {"lock_ttl", "lock_timeout", "lease_ttl", "idle_timeout", "hook_wait", "connect_timeout",
           "reply_timeout", "worker_timeout", "message_check"}
_INTS = {"max_attempts"}
_BOOLS = {"auto_pull"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
SSH_CHOICES = D.SSH_CHOICES
_LIMITS = D.RANGES
#: Settings that take one of a few words.
_CHOICES = {"ssh": SSH_CHOICES, "path_guard": D.PATH_GUARD_CHOICES}


@dataclass(frozen=True)
class Config:
    workspace: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    ssh: str = D.SSH
    worker_id: str | None = None
    agent: str | None = None
    capabilities: tuple[str, ...] = ()
    lock_ttl: float = D.LOCK_TTL
    lock_timeout: float = D.LOCK_TIMEOUT
    lease_ttl: float = D.LEASE_TTL
    max_attempts: int = D.MAX_ATTEMPTS
    idle_timeout: float = D.IDLE_TIMEOUT
    hook_wait: float = D.HOOK_WAIT
    connect_timeout: float = D.CONNECT_TIMEOUT
    reply_timeout: float = D.REPLY_TIMEOUT
    worker_timeout: float = D.WORKER_TIMEOUT
    path_guard: str = D.PATH_GUARD
    message_check: float = D.MESSAGE_CHECK
    auto_pull: bool = D.AUTO_PULL
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def with_values(self, values: Mapping[str, Any], source: str) -> "Config":
        """A copy with these values checked and applied (None values are skipped)."""
        checked = {k: convert(k, v, source) for k, v in values.items() if v is not None}
        srcs = dict(self.sources)
        srcs.update({k: source for k in checked})
        return replace(self, **checked, sources=srcs)

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")


KEYS = [f.name for f in fields(Config) if f.name != "sources"]


def convert(key: str, value: Any, source: str) -> Any:
    if key not in KEYS:
        raise ConfigError(f"unknown setting {key!r} in {source}: known ones are {', '.join(KEYS)}")
    try:
        if key in _FLOATS or key in _INTS:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if key in _FLOATS else int(str(value).strip())
            low, high = _LIMITS[key]
            if not low <= number <= high:
                raise ConfigError(f"{key} = {value!r} from {source} is out of range ({low} to {high})")
            return number
        if key in _BOOLS:
            return _boolean(key, value, source)
        if key in _CHOICES:
            choice = value.strip().lower() if isinstance(value, str) else value
            if choice not in _CHOICES[key]:
                raise ConfigError(f"{key} = {value!r} from {source} is not valid: expected "
                                  f"{' or '.join(_CHOICES[key])}")
            return choice
        if key == "capabilities":
            from .validate import capabilities

            return tuple(capabilities(value))
        if not isinstance(value, str):
            raise ValueError
        return os.path.expanduser(value) if key in ("identity_file", "known_hosts", "ssh_config") else value
    except ConfigError:
        raise
    except Exception:
        kind = "a number of seconds" if key in _FLOATS else "an integer" if key in _INTS else "text"
        raise ConfigError(f"{key} = {value!r} from {source} is not valid: expected {kind}") from None


def _boolean(key: str, value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"{key} = {value!r} from {source} is not valid: expected true or false")


def config_file(cwd: str | None = None) -> str | None:
    """./mavps.yaml, else ~/.config/mavps/config.yaml; MAVPS_CONFIG names another."""
    explicit = os.environ.get("MAVPS_CONFIG")
    if explicit:
        return explicit
    for path in (os.path.join(cwd or os.getcwd(), "mavps.yaml"), os.path.expanduser("~/.config/mavps/config.yaml")):
        if os.path.isfile(path):
            return path
    return None


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         path: str | None = None, cwd: str | None = None) -> Config:
    """Defaults < config file < MAVPS_* environment < flags."""
    cfg = Config()
    path = path or config_file(cwd)
    if path:
        cfg = cfg.with_values(read_file(path), path)
    env = os.environ if env is None else env
    from_env = {k: env[f"MAVPS_{k.upper()}"] for k in KEYS if env.get(f"MAVPS_{k.upper()}") not in (None, "")}
    for k, v in from_env.items():
        cfg = cfg.with_values({k: v}, f"MAVPS_{k.upper()}")
    if flags:
        cfg = cfg.with_values({k: v for k, v in flags.items() if k in KEYS}, "the command line")
    return cfg


def read_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
