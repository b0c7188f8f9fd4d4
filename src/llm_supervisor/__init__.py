"""llm-supervisord: a supervisor daemon for a local LLM stack."""

__version__ = "0.1.0"
