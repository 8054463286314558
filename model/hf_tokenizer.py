"""A pretrained model's own tokenizer and chat template, with the interface of
`model.tokenizer.ChatTokenizer` (encode, decode, encode_chat with a learn mask, pad, stop_ids).

The files are the ones Hugging Face checkpoints ship and every serving stack reads:
`tokenizer.json` (the `tokenizers` library), `tokenizer_config.json` (special tokens and the
Jinja chat template) and `generation_config.json` (end-of-turn ids). The template is rendered
the way transformers renders it (a sandboxed Jinja environment with `trim_blocks`,
`lstrip_blocks`, `raise_exception`, `strftime_now` and a `tojson` that keeps non-ASCII), so a
prompt is tokenized to the same ids a model was trained and is served with.

What the model learns in SFT comes from the template's own output: for each assistant turn the
text between "the conversation so far + generation prompt" and "the conversation including that
turn" is the reply the model must write (its content and end-of-turn token). That needs the
template to be prefix-stable (rendering more turns never rewrites earlier ones); templates that
are not (some drop earlier reasoning) are refused with the reason instead of a wrong mask.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

CONFIG_FILES = ("tokenizer.json", "tokenizer_config.json")


class TemplateError(ValueError):
    """The chat template cannot give a trustworthy SFT mask (not prefix-stable)."""


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        content = value.get("content")
        return None if content is None else str(content)
    return None if value is None else str(value)


def _environment() -> ImmutableSandboxedEnvironment:
    from jinja2 import ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> NoReturn:
        raise TemplateError(f"chat template: {message}")

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class TemplateTokenizer:
    def __init__(self, tok: Tokenizer, config: dict[str, Any], generation: dict[str, Any] | None = None) -> None:
        self.tok, self.config, self.generation = tok, dict(config), dict(generation or {})
        template = config.get("chat_template")
        if isinstance(template, list):  # several named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
        if not template:
            raise ValueError("tokenizer_config.json has no chat_template: an imported chat model needs one")
        self.chat_template = template
        self._template = _environment().from_string(template)
        self.specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
        eos = self._id(self.specials["eos_token"])
        gen_eos = self.generation.get("eos_token_id")
        gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        self.stop_ids = list(dict.fromkeys([i for i in [*gen_eos, eos] if i is not None]))
        if not self.stop_ids:
            raise ValueError("tokenizer has no eos_token and generation_config.json no eos_token_id: "
                             "generation would never stop")
        self.end = self.stop_ids[0]
        pad = self._id(self.specials["pad_token"])
        self.pad = pad if pad is not None else self.end
        self._stop_texts = [self.tok.id_to_token(i) for i in self.stop_ids]

    def _id(self, text: str | None) -> int | None:
        return None if text is None else self.tok.token_to_id(text)

    @classmethod
    def load(cls, directory: str) -> "TemplateTokenizer":
        from tokenizers import Tokenizer

        with open(os.path.join(directory, "tokenizer_config.json")) as f:
            config = json.load(f)
        gen_path = os.path.join(directory, "generation_config.json")
        generation = json.load(open(gen_path)) if os.path.exists(gen_path) else {}
        if not config.get("chat_template"):  # transformers ≥ 4.43 may keep it in its own file
            for name in ("chat_template.jinja", "chat_template.json"):
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    text = open(path).read()
                    config["chat_template"] = json.loads(text)["chat_template"] if name.endswith(".json") else text
                    break
        return cls(Tokenizer.from_file(os.path.join(directory, "tokenizer.json")), config, generation)

    def save(self, directory: str) -> str:
        path = os.path.join(directory, "tokenizer.json")
        self.tok.save(path)
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({**self.config, "chat_template": self.chat_template}, f, indent=1, ensure_ascii=False)
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump({**self.generation, "eos_token_id": self.stop_ids}, f, indent=1)
        return path

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **{k: v for k, v in self.specials.items() if v is not None})

    def encode_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = False
                    ) -> tuple[list[int], list[bool]]:
        """Token ids of the rendered conversation and a mask that is True on each assistant
        reply and its end-of-turn token (what the template adds for that turn, up to the stop
        token: the newline some templates write after it is never generated)."""
        text = self.render(messages, add_generation_prompt)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            upto = self.render(messages[:i + 1])
            if not (upto.startswith(before) and text.startswith(upto)):
                raise TemplateError("the chat template is not prefix-stable (rendering a later turn changes an "
                                    "earlier one), so assistant tokens cannot be located for the SFT loss")
            reply = upto[len(before):]
            cut = max((reply.rfind(s) + len(s) for s in self._stop_texts if s and s in reply), default=len(reply))
            spans.append((len(before), len(before) + cut))
        enc = self.tok.encode(text, add_special_tokens=False)
        learn = [any(a <= s < b for a, b in spans) for s, _ in enc.offsets]
        return enc.ids, learn
