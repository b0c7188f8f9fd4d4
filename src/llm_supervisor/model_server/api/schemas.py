"""Request bodies and their validation.

Types are strict (``"0.7"`` is not a temperature, ``1`` is not ``true``) and NaN/infinity are
refused. Limits that depend on settings (``MAX_NEW_TOKENS``, ``MAX_INPUT_TOKENS``) are checked by
the handlers, which know them.

Sampling bounds keep every logit finite: ``temperature`` is 0 (greedy) or 0.01..100 (vLLM treats
anything below 0.01 as 0.01; dividing by 1e-45 overflowed the logits to infinity and the sampler
raised), ``repetition_penalty`` is 0.1..100 (0 < p, as transformers and TGI require, with a floor
for the same reason), ``top_p`` is in (0, 1]. Text must be valid Unicode (a lone surrogate such as
``"\\ud800"`` is valid JSON, but no tokenizer can encode it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

MIN_TEMPERATURE = 0.01
MIN_REPETITION_PENALTY = 0.1


def _temperature(value: float) -> float:
    if 0.0 < value < MIN_TEMPERATURE:
        raise ValueError(f"must be 0 (greedy) or at least {MIN_TEMPERATURE}")
    return value


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate escape)") from None
    return value


Temperature = Annotated[
    float, Field(ge=0.0, le=100.0, allow_inf_nan=False), AfterValidator(_temperature)
]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Field(ge=MIN_REPETITION_PENALTY, le=100.0, allow_inf_nan=False)]
Text = Annotated[str, AfterValidator(_unicode)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
StopList = Annotated[list[Annotated[Text, Field(min_length=1, max_length=200)]], Field(max_length=8)]


class _Base(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


def _non_empty(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    return value


class GenerateRequest(_Base):
    """``POST /api/generate``: the original body plus sampling options."""

    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: Text
    max_length: Annotated[int, Field(gt=0)] | None = None
    temperature: Temperature = 0.7
    top_p: TopP = 1.0
    top_k: Annotated[int, Field(ge=0)] = 0
    repetition_penalty: Penalty = 1.0
    stop: Text | StopList | None = None
    seed: Seed | None = None
    stream: bool = False
    ignore_eos: bool = False
    # False (the original contract): the prompt is continued as raw text. True: it is sent as
    # one user message through the tokenizer's chat template, as an instruct model expects.
    chat: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        return _non_empty(v, "prompt")


class StreamOptions(_Base):
    include_usage: bool = False


class _OpenAIBase(_Base):
    model: str | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    stop: Text | StopList | None = None
    seed: Seed | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    # Extensions that vLLM also accepts.
    top_k: Annotated[int, Field(ge=0)] | None = None
    repetition_penalty: Penalty | None = None
    ignore_eos: bool = False


class CompletionRequest(_OpenAIBase):
    """``POST /v1/completions`` (one prompt; a list holding one prompt is accepted too)."""

    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=1)]

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        _non_empty(v if isinstance(v, str) else v[0], "prompt")
        return v

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class TextPart(_Base):
    type: Literal["text"]
    text: Text


class ChatMessage(_Base):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatRequest(_OpenAIBase):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(gt=0)] | None = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.text.strip() for m in v):
            raise ValueError("messages must contain some text")
        return v


def stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def describe(exc: ValidationError) -> str:
    """One readable line per problem: ``field: message``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(x) for x in err.get("loc", ()) if not _union_tag(x)) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _union_tag(part: Any) -> bool:
    """Whether a ``loc`` part names a union member (``str``, ``list[...]``) rather than a field."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "(" in part)


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate ``data`` (already decoded JSON) as ``model``; raises ``ValidationError``."""
    return model.model_validate(data)
