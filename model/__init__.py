"""The built-in trainer: a small decoder-only transformer, its tokenizer, SFT with packing,
DPO, KV-cache generation, an OpenAI-compatible server, checkpoints and evaluation."""
