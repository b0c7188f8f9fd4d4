"""The model service: a Sanic text-generation server with honest health, an OpenAI-compatible
API, streaming and dynamic batching.

Module map (one job each):

- ``settings``     -- environment configuration (pydantic-settings), ``ENGINE`` included.
- ``manifest``     -- per-file size/sha256 manifest of a model directory; verification.
                      Free of torch/Sanic imports so repair tooling can use it cheaply.
- ``sources``      -- where the model comes from: ``MODEL_PATH``, the hub (checkpoint or one
                      GGUF file), or the offline GGUF (copied, or converted for transformers).
- ``progress``     -- the loading-progress tracker that ``/api/health`` reports.
- ``loaded``       -- what a loader hands to an engine; ``WeightsLoadError``.
- ``loader``       -- transformers: a model directory to a (model, tokenizer) pair.
- ``llama_model``  -- llama.cpp: a GGUF file to a model, context and tokenizer.
- ``batching``     -- what both engines share: queue, limits, cancellation, worker thread.
- ``engine``       -- the transformers engine (continuous batching over a merged KV cache).
- ``llama_engine`` -- the llama.cpp engine (sequences in one context, one llama_decode a step).
- ``detokenize``   -- incremental detokenisation and stop-string handling.
- ``schemas``      -- request validation models.
- ``metrics``      -- Prometheus metrics.
- ``lifecycle``    -- loading in the background, engine choice, health.
- ``generation``   -- the adapter between routes and an engine.
- ``native_api``   -- ``/``, ``/api/health``, ``/metrics``, ``/api/generate`` (a Blueprint).
- ``openai_api``   -- ``/v1/...`` (a Blueprint).
- ``guard``        -- Host allow-list and the POST rule.
- ``app``          -- assembles the Sanic application.
- ``logs``         -- structlog configuration (JSON lines when not on a TTY).
"""
