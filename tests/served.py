"""A tiny from-scratch built-in checkpoint and `curate serve` on it in a thread, for the serve
tests (tests/test_serve.py over HTTP, tests/test_interop.py with the official `openai` client)."""
import contextlib
import threading

import torch


def tiny_checkpoint(path: str, max_seq_len: int = 128) -> str:
    from model import checkpoint
    from model.config import ModelConfig
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer
    from synth.problems import word_problems

    tok = ChatTokenizer.train((p["problem"] for p in word_problems(60, seed=1)), vocab_size=300)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, n_kv_heads=1,
                                    ffn_dim=64, max_seq_len=max_seq_len))
    checkpoint.save(path, model, tok, step=0, train_config={}, trained_on=[])
    return path


@contextlib.contextmanager
def serving(ck: str, **limits):
    """`make_server` on a free port, serving in a thread; yields the server (`server_address[1]`)."""
    from model import serve

    srv = serve.make_server(ck, port=0, threads=1, **({"limits": serve.Limits(**limits)} if limits else {}))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)
