"""The model catalog language: NAME.model files parse into entries, bad files are reported with
file, line and key (and left out, the others still load), a user file replaces a shipped one,
and every non-default entry becomes a ``model@NAME.service`` unit with its own port and
environment, only in a stack that has the model service."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llm_supervisor.config import Settings
from llm_supervisor.data import shipped_models_dir, shipped_units_dir
from llm_supervisor.units.catalog import DEFAULT_MODEL, load_catalog, read_model_file
from llm_supervisor.units.ini import UnitFileError
from llm_supervisor.units.loader import load_directory
from llm_supervisor.units.model_units import add_model_units


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_a_full_model_file_parses(tmp_path: Path) -> None:
    path = write(tmp_path, "big.model", "[Model]\nDescription=big one\nSource=hf:Org/Repo\n"
                 "GGUFFile=*Q4_K_M.gguf\nEngine=llama-cpp\nContextSize=8192\nSlots=8\n"
                 "KeepAlive=2min 30s\nPin=yes\nPreload=true\nAlias=b big-one\nPort=7001\n")
    entry = read_model_file(path)
    assert (entry.name, entry.engine, entry.context_size, entry.slots) == ("big", "llama.cpp",
                                                                           8192, 8)
    assert entry.keep_alive == 150 and entry.pin and entry.preload and entry.port == 7001
    assert entry.source.repo == "Org/Repo" and entry.source.gguf_file == "*Q4_K_M.gguf"
    assert entry.aliases == ["b", "big-one"]
    assert entry.unit_name == "model@big.service"


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("[Model]\nSource=offline\nSlots=many\n", 3, "[Model] Slots", "whole number"),
    ("[Model]\nSource=offline\nKeepAlive=soon\n", 3, "[Model] KeepAlive", "invalid time span"),
    ("[Model]\nSource=offline:Q3_X\n", 2, "[Model] Source", "unknown quantization"),
    ("[Model]\nSource=relative/path\n", 2, "[Model] Source", "/absolute/path"),
    ("[Model]\nSource=offline\nColour=blue\n", 3, "[Model] Colour", "unknown key"),
    ("[Model]\nEngine=auto\n", 1, "[Model] Source", "Source= is required"),
    ("[Service]\nExecStart=/bin/true\n", 1, None, "unknown section [Service]"),
    ("[Model]\nSource=offline\nPin=maybe\n", 3, "[Model] Pin", "yes or no"),
])
def test_a_bad_file_names_file_line_and_key(tmp_path: Path, text: str, line: int,
                                            key: str | None, words: str) -> None:
    path = write(tmp_path, "bad.model", text)
    with pytest.raises(UnitFileError) as caught:
        read_model_file(path)
    error = caught.value
    assert (error.path, error.line, error.key) == (path, line, key)
    assert words in error.message
    assert str(path) in str(error)


def test_a_bad_file_is_left_out_and_the_others_load(tmp_path: Path) -> None:
    write(tmp_path, "good.model", "[Model]\nSource=offline\n")
    write(tmp_path, "bad.model", "[Model]\nSource=offline\nSlots=0\n")
    write(tmp_path, "Bad Name.model", "[Model]\nSource=offline\n")
    catalog = load_catalog([tmp_path])
    assert sorted(catalog.entries) == [DEFAULT_MODEL, "good"]
    assert sorted(e.path.name for e in catalog.errors) == ["Bad Name.model", "bad.model"]


def test_user_files_replace_shipped_ones_and_the_default_always_exists(tmp_path: Path) -> None:
    shipped = load_catalog([shipped_models_dir()])
    assert {"default", "smollm2-q4", "smollm2-q8"} <= set(shipped.entries)
    assert shipped.entries["smollm2-q8"].source.quant == "Q8_0"
    default = shipped.entries[DEFAULT_MODEL]
    assert default.pin and default.preload and math.isinf(default.keep_alive)
    write(tmp_path, "smollm2-q8.model", "[Model]\nSource=offline:Q5_0\nKeepAlive=0\n")
    merged = load_catalog([shipped_models_dir(), tmp_path])
    assert merged.entries["smollm2-q8"].source.quant == "Q5_0"
    assert merged.entries["smollm2-q8"].keep_alive == 0
    assert load_catalog([tmp_path / "missing"]).find(None).name == DEFAULT_MODEL


def test_aliases_find_models_and_a_taken_alias_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.model", "[Model]\nSource=offline\nAlias=small\n")
    write(tmp_path, "b.model", "[Model]\nSource=offline\nAlias=small a\n")
    catalog = load_catalog([tmp_path])
    assert catalog.find("small").name == "a"
    assert catalog.find("nope") is None
    assert len(catalog.errors) == 2 and all("already" in e.message for e in catalog.errors)


def _stack_units(tmp_path: Path, with_model_service: bool) -> tuple[Settings, object]:
    units = tmp_path / "units"
    units.mkdir()
    if with_model_service:
        (units / "model-service.service").write_text(
            (shipped_units_dir() / "model-service.service").read_text())
    settings = Settings(state_dir=tmp_path / "state", units_dir=units, model_service_port=6000)
    return settings, load_directory(units, settings.expansion_vars())


def test_catalog_models_become_units_with_their_own_port_and_environment(tmp_path: Path) -> None:
    write(tmp_path / "catalog", "x.model", "[Model]\nSource=offline:Q8_0\nContextSize=1024\n"
          "Slots=3\nPreload=yes\n")
    write(tmp_path / "catalog", "y.model", "[Model]\nSource=/srv/models/y.gguf\nPort=7100\n")
    settings, result = _stack_units(tmp_path, with_model_service=True)
    catalog = load_catalog([tmp_path / "catalog"])
    added = add_model_units(result, settings.expansion_vars(), catalog,
                            settings.resolved_models_port_base)
    assert added == ["model@x.service", "model@y.service"]
    x = result.units["model@x.service"]
    assert x.environment["MODEL_SERVICE_PORT"] == "6100"
    assert x.environment["MODEL_PATH"] == str(tmp_path / "state" / "models" / "x")
    assert (x.environment["LLAMA_N_CTX"], x.environment["MAX_BATCH_SIZE"]) == ("1024", "3")
    assert x.environment["HF_HUB_OFFLINE"] == "1"
    assert "requantize" in " ".join(x.exec_start_pre[0])
    assert x.health.target == "http://127.0.0.1:6100/api/health"
    assert x.wanted_by == ["stack.target"]
    y = result.units["model@y.service"]
    assert y.environment["MODEL_PATH"] == "/srv/models/y.gguf" and y.wanted_by == []
    assert y.health.target == "http://127.0.0.1:7100/api/health"


def test_no_model_units_without_the_model_service(tmp_path: Path) -> None:
    write(tmp_path / "catalog", "x.model", "[Model]\nSource=offline\n")
    settings, result = _stack_units(tmp_path, with_model_service=False)
    assert add_model_units(result, settings.expansion_vars(), load_catalog([tmp_path / "catalog"]),
                           6100) == []
    assert not any(name.startswith("model@") for name in result.units)
