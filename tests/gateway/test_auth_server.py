"""The API-key check on its own (gateway/auth_server.py), over real sockets: kept-alive
connections, request bodies read and dropped, garbage closing only its own connection, a missing
or emptied keys file letting nobody in, and keys compared by the Bearer scheme only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from llm_supervisor.gateway.api_keys import KeyRing, ensure_keys_file, keys_file, parse, problems
from llm_supervisor.gateway.auth_server import AuthServer


def _run(keys: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        server = await AuthServer(KeyRing(keys)).start()
        try:
            await scenario(server)
        finally:
            await server.close()

    asyncio.run(main())


def test_keep_alive_bodies_and_garbage(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\n\nkey-one\n  key-two  \n")

    async def scenario(server: AuthServer) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(3):  # one kept-alive connection
                ok = await client.get(server.url, headers={"Authorization": "Bearer key-two"})
                assert ok.status_code == 200
            posted = await client.post(server.url, content=b"x" * 100_000,
                                       headers={"Authorization": "bearer key-one"})
            assert posted.status_code == 200
            refused = await client.get(server.url, headers={"Authorization": "Bearer key"})
            assert refused.status_code == 401 and refused.json()["error"]["code"] == 401
            # Garbage on a connection of its own: that connection closes, the server lives on.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x00\x01 not http at all\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            again = await client.get(server.url, headers={"Authorization": "Bearer key-one"})
            assert again.status_code == 200
        assert server.allowed == 5 and server.refused == 1

    _run(keys, scenario)


def test_missing_or_emptied_file_lets_nobody_in_and_edits_apply_at_once(tmp_path: Path) -> None:
    keys = tmp_path / "keys"

    async def scenario(server: AuthServer) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            auth = {"Authorization": "Bearer k1"}
            assert (await client.get(server.url, headers=auth)).status_code == 401  # no file
            keys.write_text("k1\n")
            assert (await client.get(server.url, headers=auth)).status_code == 200
            keys.write_text("# all revoked\n")
            assert (await client.get(server.url, headers=auth)).status_code == 401

    _run(keys, scenario)


def test_keys_file_rules(tmp_path: Path) -> None:
    class Settings:
        api_keys_file = None
        bind_address = "127.0.0.1"
        state_dir = tmp_path

    assert keys_file(Settings) is None  # loopback only: open
    Settings.bind_address = "0.0.0.0"
    generated = keys_file(Settings)
    assert generated == tmp_path / "gateway" / "api-keys"
    assert ensure_keys_file(generated) and not ensure_keys_file(generated)
    assert oct(generated.stat().st_mode & 0o777) == "0o600"
    assert len(parse(generated.read_text())) == 1 and problems(generated) == []
    os.chmod(generated, 0o644)
    assert "readable by others" in problems(generated)[0]
    Settings.bind_address, Settings.api_keys_file = "127.0.0.1", tmp_path / "mine"
    assert keys_file(Settings) == tmp_path / "mine"  # explicit: enforced even on loopback
    assert "No such file" in problems(tmp_path / "mine")[0]
