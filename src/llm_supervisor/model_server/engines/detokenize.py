"""Incremental detokenisation with stop strings.

Tokens arrive one at a time; text must be emitted as soon as it is final. Two things make a
naive ``decode(token)`` wrong: a character can span several tokens (half a UTF-8 sequence decodes
to U+FFFD) and some tokenizers only place a leading space correctly in context. So we decode a
short window of recent tokens and emit the difference (the approach TGI and vLLM use).

With stop strings, the last ``max(len(stop)) - 1`` characters are held back until it is clear
they do not start a stop string; a matched stop string and everything after it is never emitted.
"""

from __future__ import annotations

from typing import Any


class TextAssembler:
    """Turns a request's token ids into emitted text deltas."""

    def __init__(self, tokenizer: Any, stop: list[str] | None = None) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self._stop = [s for s in (stop or []) if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """Add one token; return the text that became final (possibly empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.text += new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self._ids)
        return self._release(final=False)

    def finish(self) -> str:
        """No more tokens: flush what is still pending or held back."""
        if not self.stopped and self._read < len(self._ids):
            prefix_text = self._decode(self._ids[self._prefix : self._read])
            new_text = self._decode(self._ids[self._prefix :])
            self.text += new_text[len(prefix_text) :]
            self._read = len(self._ids)
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        if self._stop and not self.stopped:
            start = max(0, self._emitted - self._hold)
            hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                final = True
        safe = len(self.text) if final else max(len(self.text) - self._hold, self._emitted)
        if not self._stop and not final:
            safe = len(self.text)
        out = self.text[self._emitted : safe]
        self._emitted = safe
        return out
