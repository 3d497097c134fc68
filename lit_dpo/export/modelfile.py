"""An Ollama ``Modelfile`` for an exported GGUF: ``ollama create NAME -f FILE.Modelfile``.

Ollama renders prompts with a Go template, not the Jinja chat template the GGUF holds, so the
``TEMPLATE`` is translated. lit-dpo translates ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``,
the format of SmolLM2 and Qwen2), found by rendering the chat template and comparing, with the
default system prompt the template inserts when a conversation has none. Any other template gets
no ``TEMPLATE`` line and a comment saying so (Ollama then guesses one from the GGUF metadata).

https://github.com/ollama/ollama/blob/main/docs/modelfile.md
"""

from __future__ import annotations

from typing import Any

CHATML_STOPS = ("<|im_start|>", "<|im_end|>")
PROBE = "PROBE-MESSAGE"


def chatml_default_system(tokenizer: Any) -> tuple[bool, str | None]:
    """Whether ``tokenizer``'s chat template renders ChatML, and the system prompt it inserts
    when the conversation has none (None: it inserts none).

    Checked by rendering: a system turn, a user turn and an assistant turn must come out as
    ChatML; a user turn alone may be preceded by one ChatML system block, the default.
    """

    def render(messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )

    def block(role: str, content: str) -> str:
        return f"<|im_start|>{role}\n{content}<|im_end|>\n"

    turns = [("system", "S-" + PROBE), ("user", "U-" + PROBE), ("assistant", "A-" + PROBE)]
    messages = [{"role": role, "content": content} for role, content in turns]
    try:
        full = render(messages, False)
        alone = render(messages[1:2], True)
    except Exception:  # a template that needs other input is not ChatML
        return False, None
    if full != "".join(block(role, content) for role, content in turns):
        return False, None
    user_turn = block("user", "U-" + PROBE) + "<|im_start|>assistant\n"
    if alone == user_turn:
        return True, None
    head = alone.removesuffix(user_turn)
    if alone.endswith(user_turn) and head.startswith("<|im_start|>system\n"):
        default = head.removeprefix("<|im_start|>system\n").removesuffix("<|im_end|>\n")
        if head == block("system", default):
            return True, default
    return False, None


def go_template(default_system: str | None) -> str:
    """Ollama's Go template for ChatML, inserting ``default_system`` where the Jinja one does."""
    lines = []
    if default_system is not None:
        lines.append(
            '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}'
            f"<|im_start|>system\n{default_system}<|im_end|>\n{{{{ end }}}}"
        )
    lines.append(
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    )
    return "".join(lines)


def modelfile(gguf_name: str, tokenizer: Any, summary: str) -> str:
    """The Modelfile text for the GGUF file ``gguf_name`` (beside it).

    Args:
        gguf_name: the file name, relative to the Modelfile's folder.
        tokenizer: the tokenizer whose chat template the model was trained with.
        summary: the model card's summary, written as comment lines at the top.
    """
    header = "".join(f"# {line}\n" for line in summary.splitlines() if line.strip())
    text = f"{header}FROM ./{gguf_name}\n"
    chatml, default_system = chatml_default_system(tokenizer)
    if not chatml:
        return text + (
            "# The chat template is not ChatML: lit-dpo wrote no TEMPLATE. Ollama falls back to\n"
            "# the GGUF's tokenizer.chat_template if it knows it; else write one by hand.\n"
        )
    # Go templates have no escape for triple quotes; ChatML text contains none.
    text += f'TEMPLATE """{go_template(default_system)}"""\n'
    text += "".join(f'PARAMETER stop "{stop}"\n' for stop in CHATML_STOPS)
    return text
