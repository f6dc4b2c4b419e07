"""`DemoChatModel`: the mock provider's scripted policy as an in-process LangChain chat model.

Used as the offline demo model when no provider key is configured. Replies are deterministic
and computed on the CPU only (the tokenizer is loaded once, when the model is built).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    InvalidToolCall,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, model_validator

from core.tokens import get_encoding
from mock_llm import policy

DEMO_MODEL_NAME = "steward-demo"


class DemoChatModel(BaseChatModel):
    """A scripted, offline chat model that behaves like the mock provider.

    It answers policy questions from the `<context>` block, calls `search_policies`,
    `get_order` and `issue_refund`, and honours the `[[mock:...]]` test markers; see
    `mock_llm.policy.reply`.
    """

    model_name: str = DEMO_MODEL_NAME
    tools: list[dict[str, Any]] = Field(default_factory=list)
    """OpenAI tool definitions remembered by `bind_tools`."""
    tool_choice: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _load_tokenizer(self) -> DemoChatModel:
        get_encoding("o200k_base")  # file I/O once, here, never inside a model call
        return self

    @property
    def _llm_type(self) -> str:
        return "steward-demo"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Return a copy of the model that offers `tools` (converted to OpenAI format).

        Args:
            tools: Tools, functions, pydantic models or OpenAI tool dicts.
            tool_choice: Passed to the policy; `"none"` disables tool calls.
            **kwargs: Accepted for compatibility (e.g. `parallel_tool_calls`) and ignored.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.model_copy(update={"tools": formatted, "tool_choice": tool_choice})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._respond(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._respond(messages, kwargs)

    def _respond(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        """Run the policy and build the AIMessage the way langchain-openai parses a reply."""
        request: dict[str, Any] = {
            "model": self.model_name,
            "messages": convert_to_openai_messages(messages),
            "tools": kwargs.get("tools", self.tools),
            "tool_choice": kwargs.get("tool_choice", self.tool_choice),
        }
        answer = policy.reply(request)
        tool_calls: list[dict[str, Any]] = []
        invalid_tool_calls: list[InvalidToolCall] = []
        for call in answer.tool_calls:
            raw = call.to_openai()
            try:
                parsed = parse_tool_call(raw, return_id=True)
            except Exception as exc:  # noqa: BLE001 - mirrors langchain-openai's handling
                invalid_tool_calls.append(make_invalid_tool_call(raw, str(exc)))
                continue
            if parsed is not None:
                tool_calls.append(parsed)
        usage = UsageMetadata(
            input_tokens=answer.prompt_tokens,
            output_tokens=answer.completion_tokens,
            total_tokens=answer.total_tokens,
        )
        metadata = {"model_name": self.model_name, "finish_reason": answer.finish_reason}
        message = AIMessage(
            content=answer.content or "",
            tool_calls=tool_calls,
            invalid_tool_calls=invalid_tool_calls,
            usage_metadata=usage,
            response_metadata=metadata,
        )
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=message, generation_info={"finish_reason": answer.finish_reason}
                )
            ],
            llm_output={"model_name": self.model_name, "token_usage": answer.usage()},
        )


__all__ = ["DEMO_MODEL_NAME", "DemoChatModel"]
