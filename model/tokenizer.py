"""Byte-level BPE trained locally on the training tables (nothing downloaded), with the chat
format's markers as special tokens: <|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>.

Digits are single tokens by default (as in LLaMA's and Phi-3's tokenizers): BPE otherwise merges
frequent numbers into one token and splits the rest at arbitrary places, so "81" and "18" share
nothing and column arithmetic has no consistent units to learn. In the closed loop 181 of 186
held-out errors were arithmetic under merged numbers (bench/README.md, "The closed loop")."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from model.hf_tokenizer import TemplateTokenizer

SPECIAL = ["<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# The same format as a Jinja chat template, written with an exported checkpoint so transformers,
# vLLM and TRL build the prompts this tokenizer's `encode_chat` builds (tested token for token).
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|' + ('system' if m['role'] == 'developer' else m['role']) + '|>' }}"
                 "{{ m['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _special_id(tok: Tokenizer, marker: str) -> int:
    i = tok.token_to_id(marker)
    if i is None:
        raise ValueError(f"tokenizer has no {marker} token: not a chat BPE trained by ChatTokenizer.train")
    return i


class ChatTokenizer:
    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.pad, self.system, self.user, self.assistant, self.end = (_special_id(tok, s) for s in SPECIAL)
        self.stop_ids = [self.end]
        self.chat_template = CHAT_TEMPLATE
        self.specials = {"bos_token": None, "eos_token": "<|end|>", "pad_token": "<|pad|>", "unk_token": None}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024, split_digits: bool = True) -> "ChatTokenizer":
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
        tok = Tokenizer(models.BPE())
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
        # " 19" → " 1", "9": one token per digit, the first keeping its leading space
        digits = pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if split_digits else byte_level
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str) -> "ChatTokenizer":
        from tokenizers import Tokenizer
        return cls(Tokenizer.from_file(os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path))

    def save(self, directory: str) -> str:
        path = os.path.join(directory, "tokenizer.json")
        self.tok.save(path)
        return path

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in (self.pad,)], skip_special_tokens=True)

    def encode_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = False
                    ) -> tuple[list[int], list[bool]]:
        """Token ids and a mask that is True on what the model must learn to write: each
        assistant reply and its closing <|end|> (never the prompt)."""
        ids, learn = [], []
        role_tok = {"system": self.system, "developer": self.system, "user": self.user, "assistant": self.assistant}
        for m in messages:
            body = self.encode(m["content"])
            head = [role_tok[m["role"]]]
            ids += head + body + [self.end]
            is_asst = m["role"] == "assistant"
            learn += [False] * len(head) + [is_asst] * (len(body) + 1)
        if add_generation_prompt:
            ids.append(self.assistant)
            learn.append(False)
        return ids, learn


def load_tokenizer(directory: str) -> AnyTokenizer:
    """The tokenizer a checkpoint directory holds: a pretrained model's own (tokenizer.json with a
    chat template in tokenizer_config.json) or the from-scratch chat BPE."""
    from model.hf_tokenizer import TemplateTokenizer

    if os.path.isdir(directory) and os.path.exists(os.path.join(directory, "tokenizer_config.json")):
        return TemplateTokenizer.load(directory)
    return ChatTokenizer.load(directory)


if TYPE_CHECKING:  # what a checkpoint holds: the from-scratch chat BPE or a pretrained model's own
    AnyTokenizer = ChatTokenizer | TemplateTokenizer
