"""OpenAI-style chat messages checked and put into the shape chat templates expect."""

from __future__ import annotations

import json

from kb.errors import BadRequest

ROLES = ("system", "user", "assistant", "tool")


def _text_of(content: object, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(f"messages[{index}].content: only text parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise BadRequest(f"messages[{index}].content must be a string or a list of text parts")


def _template_tool_call(call: dict) -> dict:
    """Chat templates render arguments with `tojson`, so they want a dict, not OpenAI's JSON string."""
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass
    return {**call, "function": function}


def normalise_messages(messages: list[dict]) -> list[dict]:
    """Check roles and flatten content parts to text; raises BadRequest with the offending index."""
    if not messages:
        raise BadRequest("messages must not be empty")
    result = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{index}] must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(f"messages[{index}].role must be one of {', '.join(ROLES)}, not {role!r}")
        clean = {**message, "content": _text_of(message.get("content"), index)}
        if message.get("tool_calls"):
            clean["tool_calls"] = [_template_tool_call(call) for call in message["tool_calls"]]
        result.append(clean)
    return result


def last_user_text(messages: list[dict]) -> str:
    """The text of the last user message ('' if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"), 0)
    return ""
