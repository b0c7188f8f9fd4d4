"""[Container] parsing and error messages of the docker runtime: pure functions, no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_supervisor.runtimes.base import RuntimeError_
from llm_supervisor.runtimes.docker.build import plan_build
from llm_supervisor.runtimes.docker.errors import connect, connection_error, start_error
from llm_supervisor.runtimes.docker.runtime import engine_available, exit_status
from llm_supervisor.runtimes.docker.spec import (
    SpecError,
    container_environment,
    parse_memory,
    parse_port,
    parse_volume,
    plan_container,
    port_bindings,
)
from llm_supervisor.units.model import ContainerSpec, Unit

REPO_ROOT = Path(__file__).resolve().parents[3]


def make_unit(tmp_path: Path, **container: object) -> Unit:
    unit = Unit(name="web.service", path=tmp_path / "web.service", kind="service")
    unit.container = ContainerSpec(**container)  # type: ignore[arg-type]
    return unit


@pytest.mark.parametrize(("text", "key", "host"), [
    ("5000", "5000/tcp", None),
    ("8080:80", "80/tcp", 8080),
    ("127.0.0.1:5000:5000", "5000/tcp", ("127.0.0.1", 5000)),
    ("127.0.0.1::5000/udp", "5000/udp", ("127.0.0.1", None)),
    ("[::1]:6080:6080", "6080/tcp", ("::1", 6080)),
])
def test_ports(text: str, key: str, host: object) -> None:
    assert port_bindings([parse_port(text)]) == {key: host}


def test_bad_port_names_the_key() -> None:
    with pytest.raises(SpecError, match=r"\[Container\] Ports: cannot parse 'http'"):
        parse_port("http")


def test_volumes_bind_named_and_relative(tmp_path: Path) -> None:
    bind = parse_volume("/srv/models:/app/models:ro", tmp_path)
    assert (bind.source, bind.target, bind.mode, bind.named) == ("/srv/models", "/app/models",
                                                                 "ro", False)
    named = parse_volume("hf-cache:/root/.cache", tmp_path)
    assert named.named and named.mode == "rw"
    relative = parse_volume("./data:/data", tmp_path)
    assert relative.source == str(tmp_path / "data")
    with pytest.raises(SpecError, match="must be absolute"):
        parse_volume("x:relative", tmp_path)


def test_memory_sizes() -> None:
    assert parse_memory("512m") == str(512 << 20)
    assert parse_memory("2G") == str(2 << 30)
    assert parse_memory("1.5g") == str(int(1.5 * (1 << 30)))
    with pytest.raises(SpecError):
        parse_memory("lots")


def test_plan_has_init_no_restart_policy_and_limits(tmp_path: Path) -> None:
    unit = make_unit(tmp_path, image="x", ports=("127.0.0.1:5000:5000",), memory="1g", cpus=1.5,
                     gpus="all", command=("serve", "--port", "5000"), user="1000")
    plan = plan_container(unit, {}, tmp_path)
    kwargs = plan.kwargs
    assert kwargs["init"] is True and "restart_policy" not in kwargs
    assert kwargs["mem_limit"] == str(1 << 30) and kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["command"] == ["serve", "--port", "5000"] and kwargs["user"] == "1000"
    assert kwargs["network"] == "llm-network" and kwargs["stop_signal"] == "SIGTERM"
    assert kwargs["device_requests"][0]["Count"] == -1


def test_plan_drops_every_capability_and_new_privileges(tmp_path: Path) -> None:
    unit = make_unit(tmp_path, image="x")
    kwargs = plan_container(unit, {}, tmp_path).kwargs
    assert kwargs["cap_drop"] == ["ALL"] and "cap_add" not in kwargs
    assert kwargs["security_opt"] == ["no-new-privileges"]
    unit.ambient_capabilities = ["CAP_NET_BIND_SERVICE"]  # the one way to keep one
    assert plan_container(unit, {}, tmp_path).kwargs["cap_add"] == ["CAP_NET_BIND_SERVICE"]


def _final_stage_user(dockerfile: Path) -> str | None:
    """The USER in effect at the end of the last stage (None: root by default)."""
    user = None
    for line in dockerfile.read_text().splitlines():
        words = line.strip().split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            user = None
        elif words[0].upper() == "USER" and len(words) > 1:
            user = words[1]
    return user


def test_every_shipped_image_runs_as_a_non_root_user() -> None:
    dockerfiles = sorted((REPO_ROOT / "packaging" / "docker").glob("*/Dockerfile*"))
    dockerfiles = [p for p in dockerfiles if not p.name.endswith(".dockerignore")]
    assert len(dockerfiles) >= 4, dockerfiles
    for dockerfile in dockerfiles:
        user = _final_stage_user(dockerfile)
        assert user is not None, f"{dockerfile}: no USER in the final stage (runs as root)"
        assert user.split(":")[0] not in ("root", "0"), f"{dockerfile}: USER {user}"


def test_host_network_drops_port_bindings(tmp_path: Path) -> None:
    plan = plan_container(make_unit(tmp_path, image="x", network="host", ports=("80",)), {},
                          tmp_path)
    assert plan.kwargs["network_mode"] == "host" and "ports" not in plan.kwargs


def test_only_the_units_own_environment_enters_the_container(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nexport FROM_FILE=1\n")
    unit = make_unit(tmp_path, image="x")
    unit.environment = {"MODEL_PATH": "/models"}
    unit.environment_files = [(str(env_file), False)]
    env = {"PATH": "/host/bin", "HOME": "/root", "MODEL_PATH": "/models", "FROM_FILE": "1",
           "LLM_SUPERVISOR_UNIT": "web.service"}
    assert container_environment(unit, env) == {"FROM_FILE": "1", "LLM_SUPERVISOR_UNIT":
                                                 "web.service", "MODEL_PATH": "/models"}


def test_exit_codes_above_128_are_signals() -> None:
    assert exit_status(137).signal == 9 and exit_status(137).abnormal
    assert exit_status(143).describe() == "killed by SIGTERM"
    assert exit_status(0).clean and exit_status(1).code == 1 and exit_status(255).code == 255


def test_build_plan_paths_and_base_image(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    (context / "sub" / "Dockerfile").write_text("FROM ${BASE_IMAGE}\n")
    (context / "sub" / "Dockerfile.dockerignore").write_text(".venv\n")
    unit = make_unit(tmp_path, build="ctx", dockerfile="sub/Dockerfile",
                     build_args={"EXTRA": "1"})
    plan = plan_build(unit, tmp_path, "t:1", "local/base:1")
    assert plan.context == context and plan.dockerfile == "sub/Dockerfile"
    assert plan.ignore_file == context / "sub" / "Dockerfile.dockerignore"
    assert plan.buildargs == {"BASE_IMAGE": "local/base:1", "EXTRA": "1"}
    with pytest.raises(RuntimeError_, match="is not a directory"):
        plan_build(make_unit(tmp_path, build="missing"), tmp_path, "t:1", None)


def test_engine_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert engine_available() is False
    with pytest.raises(RuntimeError_, match="systemctl start docker.*dockerd"):
        connect()
    denied = connection_error(PermissionError(13, "Permission denied"))
    assert "permission denied on the Docker socket" in str(denied)
    assert "usermod -aG docker" in str(denied)

    class FakeAPIError(Exception):
        explanation = ("driver failed programming external connectivity on endpoint x: Error "
                       "starting userland proxy: listen tcp4 127.0.0.1:5000: bind: address "
                       "already in use")

    message = str(start_error(FakeAPIError(), "127.0.0.1:5000:5000"))
    assert message.startswith("port 5000 is already in use on the host")
