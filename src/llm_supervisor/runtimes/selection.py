"""Choosing a runtime per unit: ``Runtime=`` wins; else the configured default, where ``auto``
means docker when an engine answers and the unit has a [Container], else local processes."""

from __future__ import annotations

import structlog

from llm_supervisor.config import Settings
from llm_supervisor.runtimes.base import Runtime
from llm_supervisor.runtimes.process.runtime import ProcessRuntime
from llm_supervisor.units.model import Unit

log = structlog.get_logger("llm_supervisor.runtime")


class RuntimeSelector:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = ProcessRuntime()
        self._docker: Runtime | None = None
        self._engine_answers: bool | None = None

    def docker(self) -> Runtime:
        """The docker runtime, created on first use (imports the SDK only when needed)."""
        if self._docker is None:
            from llm_supervisor.runtimes.docker.runtime import DockerRuntime

            self._docker = DockerRuntime(self.settings)
        return self._docker

    def engine_answers(self) -> bool:
        if self._engine_answers is None:
            try:
                from llm_supervisor.runtimes.docker.runtime import engine_available

                self._engine_answers = engine_available()
            except ImportError as exc:  # the docker SDK is not installed
                log.info("docker_sdk_missing", error=str(exc))
                self._engine_answers = False
            log.info("docker_engine_probe", available=self._engine_answers)
        return self._engine_answers

    def for_unit(self, unit: Unit) -> Runtime:
        if unit.runtime == "docker":
            return self.docker()
        if unit.runtime == "process":
            return self.process
        default = self.settings.default_runtime
        if unit.container is not None and unit.exec_start is None:
            return self.docker()
        if unit.container is not None and (
            default == "docker" or (default == "auto" and self.engine_answers())
        ):
            return self.docker()
        return self.process

    def condition_runtime(self, unit: Unit) -> str:
        """What ``ConditionRuntime=`` compares with: the unit's Runtime= when set, else the
        daemon's default, where ``auto`` is docker when an engine answers. Unlike
        :meth:`for_unit` it ignores whether this unit has a [Container]: the condition picks one
        of two sets of units (the desktop as processes or as containers) by the stack's runtime."""
        if unit.runtime is not None:
            return unit.runtime
        default = self.settings.default_runtime
        if default == "auto":
            return "docker" if self.engine_answers() else "process"
        return default

    async def remove_owned(self, purge: bool) -> list[str]:
        removed = await self.process.remove_owned(purge)
        if self._docker is not None or (self.settings.default_runtime != "process"
                                        and self.engine_answers()):
            removed += await self.docker().remove_owned(purge)
        return removed

    async def close(self) -> None:
        await self.process.close()
        if self._docker is not None:
            await self._docker.close()
