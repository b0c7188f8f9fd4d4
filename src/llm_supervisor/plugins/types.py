"""Values exchanged through hooks, for plugin authors: ``Diagnosis``, ``RepairResult``,
``Progress`` (defined with the supervisor that acts on them), and the ``SupervisorView``."""

from __future__ import annotations

from llm_supervisor.plugins.view import SupervisorView
from llm_supervisor.supervisor.outcomes import Diagnosis, Progress, RepairResult

__all__ = ["Diagnosis", "Progress", "RepairResult", "SupervisorView"]
