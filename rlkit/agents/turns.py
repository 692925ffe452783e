"""Token-in/token-out turns: the environment's text as the chat template renders it.

A trajectory is one token sequence; the model's turns are kept exactly as generated and earlier
turns are never tokenised again (re-tokenising decoded text can change the ids, and then the
trainer would score tokens the model never sampled).  Only the NEW environment turn is
tokenised: the chat template renders [user, assistant, <role> observation] with the generation
prompt, and the text after the assistant's content is the environment's part, less what the
model already wrote to close its turn (its end-of-turn token, e.g. Qwen's `<|im_end|>`).  A
recipe without a chat template (`model.chat_template: false`) gets the observation between
newlines.
"""

from __future__ import annotations

from typing import Any

_ASSISTANT = "RLKIT-ASSISTANT-TURN"  # a marker no template changes


class TurnEncoder:
    """Encodes prompts with tool declarations and environment turns for one tokenizer."""

    def __init__(self, tokenizer: Any, chat_template: bool):
        self.tok = tokenizer
        self.chat = bool(chat_template and getattr(tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tok(text, add_special_tokens=False)["input_ids"]]

    def prompt_with_tools(self, text: str, tools: list[dict] | None) -> list[int] | None:
        """The prompt rendered with the tools declared (the template's system block), or None
        when there are no tools or no chat template (the prompt then stays as it is)."""
        if not tools or not self.chat:
            return None
        ids = self.tok.apply_chat_template(
            [{"role": "user", "content": text}],
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return [int(i) for i in ids]

    def env_turn(self, observation: str, role: str, last_model_token: int | None) -> list[int]:
        """Token ids of one environment turn that follows a model turn ending with
        `last_model_token`, through the generation prompt of the model's next turn."""
        if not self.chat:
            return self.encode(f"\n{observation}\n")
        full = self.tok.apply_chat_template(
            [
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": _ASSISTANT},
                {"role": role, "content": observation},
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        after = full[full.rindex(_ASSISTANT) + len(_ASSISTANT) :]
        if last_model_token is not None:
            closing = self.tok.decode([last_model_token])
            if closing and after.startswith(closing):  # the model closed its turn itself
                after = after[len(closing) :]
        return self.encode(after)
