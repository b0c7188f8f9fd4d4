"""The model service: a Sanic text-generation server with honest health, an OpenAI-compatible
API, streaming and dynamic batching.

Module map (one job each):

- ``settings``   -- environment configuration (pydantic-settings).
- ``manifest``   -- per-file size/sha256 manifest of a model directory; verification.
                    Free of torch/Sanic imports so repair tooling can use it cheaply.
- ``sources``    -- where the model comes from: ``MODEL_PATH``, the hub, or the offline GGUF.
- ``progress``   -- the loading-progress tracker that ``/api/health`` reports.
- ``loader``     -- turns a model directory into a (model, tokenizer) pair; classifies failures.
- ``engine``     -- the generation worker: queue, continuous batching, sampling, cancellation.
- ``detokenize`` -- incremental detokenisation and stop-string handling.
- ``schemas``    -- request validation models.
- ``metrics``    -- Prometheus metrics.
- ``app``        -- the Sanic application and its routes.
- ``logs``       -- structlog configuration (JSON lines when not on a TTY).
"""
