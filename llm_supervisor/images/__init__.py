"""Images of the stack without an image registry: a local Debian base made with debootstrap,
the host's Python wheels for the model-service image, and ``llm-supervisorctl images build``."""
