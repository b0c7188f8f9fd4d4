"""Model-server configuration, read once from the environment.

The original container's names are kept (``MODEL_PATH``, ``USE_INT8``, ``MODEL_SERVICE_PORT``);
the rest are new. Resolve a :class:`ModelServerSettings` once at start-up and pass it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_ID = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"


class ModelServerSettings(BaseSettings):
    """Settings of the model server. Every field is read from the environment variable of the
    same name in upper case (``model_path`` ← ``MODEL_PATH``) unless an alias says otherwise."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", protected_namespaces=(), populate_by_name=True
    )

    model_path: Path = Field(
        default=Path("models/tinyllama"),
        description="Model directory; filled from the hub or the offline GGUF when empty.",
    )
    model_id: str = Field(default=DEFAULT_MODEL_ID, description="Hub repository to download.")
    engine: Literal["auto", "transformers", "llama.cpp"] = Field(
        default="auto",
        description="auto: a GGUF model is served by llama.cpp, anything else by transformers.",
    )
    gguf_file: str | None = Field(
        default=None,
        description="GGUF file (name or glob) to download from MODEL_ID's repo; implies llama.cpp.",
    )
    llama_n_ctx: int = Field(
        default=4096, ge=256, description="llama.cpp: KV-cache cells shared by all running sequences."
    )
    llama_n_batch: int = Field(
        default=512, ge=8, description="llama.cpp: tokens per decode step (prompts are chunked to fit)."
    )
    llama_threads: int = Field(
        default=0, ge=0, description="llama.cpp threads; 0 = the CPUs this process may run on."
    )
    use_int8: bool = Field(
        default=True,
        description="transformers engine: load Linear layers as bitsandbytes int8 (a GGUF is "
        "quantized already: reported as not applicable).",
    )
    port: int = Field(
        default=5000, ge=1, le=65535, validation_alias=AliasChoices("MODEL_SERVICE_PORT", "port")
    )
    host: str = Field(
        default="127.0.0.1", validation_alias=AliasChoices("MODEL_SERVICE_HOST", "HOST", "host")
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="Compute dtype without int8; auto = bf16 where the CPU has it."
    )

    max_input_tokens: int = Field(default=2048, ge=1)
    max_new_tokens: int = Field(default=1024, ge=1, description="Upper limit for max_length.")
    default_new_tokens: int = Field(default=256, ge=1, description="max_length when not given.")
    max_concurrent_requests: int = Field(
        default=32, ge=1, description="Requests admitted (queued + running); beyond: 429."
    )
    max_batch_size: int = Field(default=8, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    # DNS-rebinding defence: requests whose Host names none of these (nor localhost, an IP
    # literal, MODEL_SERVICE_HOST, BIND_ADDRESS or this machine's hostname) get 421.
    allowed_hosts: str = Field(
        default="",
        description="Extra host names the server answers to, comma-separated; '*' allows any.",
    )
    bind_address: str = Field(
        default="127.0.0.1", description="The gateway's bind address (the daemon's BIND_ADDRESS)."
    )

    stall_timeout_sec: float | None = Field(
        default=None, gt=0,
        description="StallTimeoutSec=: no token for this long with requests in flight = stuck "
        "(503 to everyone waiting, health 503, the supervisor restarts it). Unset: not watched.",
    )
    shutdown_timeout: float = Field(
        default=5.0, ge=0, description="Seconds in-flight requests may finish after SIGTERM."
    )
    hub_timeout: float = Field(default=10.0, gt=0, description="Seconds for one hub request.")
    verify_model: Literal["off", "size", "sha256"] = Field(
        default="size", description="Check the manifest before loading: sizes only, or hashes."
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    test_page: Path | None = Field(
        default=None, description="Override the path of the HTML test page served at /."
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_alias(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in {"llama_cpp", "llama-cpp", "llamacpp"}:
            return "llama.cpp"
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_limits(self) -> ModelServerSettings:
        if self.default_new_tokens > self.max_new_tokens:
            self.default_new_tokens = self.max_new_tokens
        return self
