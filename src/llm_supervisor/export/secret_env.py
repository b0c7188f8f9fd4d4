"""Which ``Environment=`` values an export must not write in the clear.

A key that looks secret (``HF_TOKEN``, ``API_KEY``, ``DB_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``,
``...CREDENTIALS``) — or every key, with ``--secret-env all`` — leaves the manifests: Kubernetes
gets it from a ``Secret`` (``secretKeyRef``), Compose and Swarm from a 0600 ``env_file`` next to
the compose file. Keep those files out of version control.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from llm_supervisor.export.model import ExportError, Service, Stack

SecretMode = Literal["auto", "all"]
_SECRET_WORDS = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASS|PWD|KEY|APIKEY|CREDENTIALS?|AUTH|PRIVATE|"
    r"SIGNATURE|CERT)(_|$)", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_WORDS.search(name))


def split_service(service: Service, mode: SecretMode) -> Service:
    secret = {k: v for k, v in service.environment.items() if mode == "all" or looks_secret(k)}
    for key, value in secret.items():
        if "\n" in value or "\r" in value:
            raise ExportError(f"{service.unit}: the value of {key} spans lines; an env file "
                              "cannot hold it (put it in an EnvironmentFile= secret instead)")
    plain = {k: v for k, v in service.environment.items() if k not in secret}
    return dataclasses.replace(service, environment=plain, secret_environment=secret)


def split_stack(stack: Stack, mode: SecretMode) -> Stack:
    return dataclasses.replace(stack, services=[split_service(s, mode) for s in stack.services])


def env_file_text(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))
