"""Settings resolved once (pydantic-settings) and passed down."""

from llm_supervisor.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
