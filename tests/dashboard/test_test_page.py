"""The test page (src/llm_supervisor/data/web/test_llm.html, served by the model server at ``/``) in
a real headless Chromium against a real model server (llama.cpp on the offline SmolLM2 GGUF):
the answer is streamed (tokens appear before the answer is complete), each answer shows its time
to first token and tokens/s, the visit's prompts and answers are kept (also across a reload of
the tab), the model picker is filled from /v1/models and a picked model is asked through
/v1/chat/completions, and the original's Polish label is still on the button."""

from __future__ import annotations

import shutil

import pytest

from tests.model_fixtures import ModelServer

pytestmark = pytest.mark.slow


def test_the_page_streams_shows_speed_keeps_the_visit_and_picks_a_model(
        gguf_server: ModelServer) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with gguf_server.client() as client:
        model_id = client.get("/v1/models").json()["data"][0]["id"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            page.set_default_timeout(300_000)  # a shared, busy machine
            posts: list[tuple[str, dict]] = []
            page.on("request", lambda r: posts.append((r.url, r.post_data_json))
                    if r.method == "POST" else None)
            page.goto(gguf_server.url + "/")
            assert "Generuj tekst" in page.inner_text("#generate")
            page.wait_for_selector("#health.ready")
            page.wait_for_function(f"[...document.querySelectorAll('#model option')]"
                                   f".some(o => o.textContent.startsWith({model_id!r}))")
            # streamed: the page shows some tokens while it is still streaming
            page.fill("#prompt", "Tell a short story about a cat who learns to sail.")
            page.fill("#max_length", "48")
            page.click("#generate")
            page.wait_for_function("document.querySelector('#output').classList.contains("
                                   "'streaming') && document.querySelector('#output')"
                                   ".textContent.length > 0")
            partial = page.inner_text("#output")
            page.wait_for_function("document.querySelector('#stats').dataset.tokensPerS")
            final = page.inner_text("#output")
            assert partial and len(final) > len(partial), (partial, final)
            stats = page.inner_text("#stats")
            assert "first token" in stats and "tokens/s" in stats, stats
            assert float(page.get_attribute("#stats", "data-tokens-per-s")) > 0
            assert 0 < int(page.get_attribute("#stats", "data-ttft-ms")) < 60_000
            assert posts[-1][0].endswith("/api/generate") and posts[-1][1]["stream"] is True
            # the visit keeps the answer; a second one through the OpenAI API for a picked model
            # (the only one here; with many models each has its entry)
            page.evaluate(f"""() => {{ const o = document.createElement('option');
                o.value = {model_id!r}; o.textContent = {model_id!r};
                document.querySelector('#model').append(o); }}""")
            page.select_option("#model", model_id)
            page.fill("#prompt", "Name three colours.")
            page.fill("#max_length", "12")
            page.click("#generate")
            page.wait_for_function("document.querySelectorAll('#history li').length === 2")
            url, body = posts[-1]
            assert url.endswith("/v1/chat/completions") and body["model"] == model_id
            assert body["stream"] is True
            entries = page.inner_text("#history")
            assert "Name three colours." in entries and "sail" in entries
            assert entries.count("tokens/s") == 2
            page.reload()
            page.wait_for_selector("#history li")
            assert page.locator("#history li").count() == 2  # the visit survives a reload
        finally:
            browser.close()
