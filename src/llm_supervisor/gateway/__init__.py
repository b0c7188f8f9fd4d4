"""The HTTP gateway: routes from units' ``[Route]`` sections, rendered as Caddy or Traefik config.

Nothing here runs a program except :mod:`llm_supervisor.gateway.launch` (the gateway unit's
``ExecStart``); the built-in plugin :mod:`llm_supervisor.plugins.builtin.gateway` writes the
config files and reloads a running gateway when units change.
"""
