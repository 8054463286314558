"""Our tables in the tools users load them with (`make test-interop`; pins in requirements-interop.txt),
and `curate serve` under the official `openai` client.

One small real warehouse, made by the project's own pipelines: two versions of `docs` (the
demo pipeline), `speech_sft` (TTS + ASR over six queries), and `reasoning_sft` / `preferences`
(rejection sampling against a local OpenAI-compatible server). Nothing is downloaded: the
TRL model and tokenizer are built here from a config and a BPE trained on the tables.
"""
import io
import json
import os
import wave

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from chat_server import ChatServer
from helpers import corpus, run_demo
from schemas.store import Store
from served import serving, tiny_checkpoint
from synth.cot_sampling import SYSTEM
from synth.problems import word_problems

pytestmark = pytest.mark.interop
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    from pipelines.demo_corpus import speech_queries
    from pipelines.reasoning_data import run_main as reasoning_main
    from pipelines.script import options
    from pipelines.speech_sft import build, parser
    from schemas.engine.runner import run

    tmp = tmp_path_factory.mktemp("interop")
    wh = str(tmp / "warehouse")
    src = corpus(tmp, n_files=2, limit=120)
    v1 = run_demo(wh, src, min_words=5, tag="loose")
    v2 = run_demo(wh, src, min_words=12, tag="strict")
    assert v1.accounting["kept"] > v2.accounting["kept"] > 0
    # speech: six speakable queries, two fast voices
    queries = [q for q in speech_queries() if len(q["messages"][0]["content"].split()) >= 4][:6]
    path = tmp / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in queries))
    args = parser().parse_args(["--warehouse", wh, "--executor", "local", "--quiet", "--input", str(path),
                                "--voices", "flite:slt", "espeak-ng:en-us", "--max-wer", "1.0"])
    pipeline, inputs = build(args)
    assert run(pipeline, options(args, inputs)).accounting["kept"] >= 3
    # reasoning: 10 word problems, 4 samples each from a server that answers some wrong
    probs = word_problems(10, seed=5)
    ppath = tmp / "problems.jsonl"
    ppath.write_text("".join(json.dumps(p) + "\n" for p in probs))
    with ChatServer({p["problem"]: p["answer"] for p in probs}) as srv:
        assert reasoning_main(["--input", str(ppath), "--warehouse", wh, "--generator", f"openai:{srv.url}#m",
                               "--executor", "local", "--k", "4", "--quiet"]) == 0
    return wh


# ---- pyiceberg ---------------------------------------------------------------------------
def test_pyiceberg_sqlcatalog_named_curate_lists_and_reads_our_tables(wh):
    from pyiceberg.catalog.sql import SqlCatalog
    cat = SqlCatalog("curate", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
    assert ("curate",) in cat.list_namespaces()
    names = {t[-1] for t in cat.list_tables("curate")}
    assert {"docs", "docs_rejects", "speech_sft", "preferences", "reasoning_sft"} <= names
    t = cat.load_table("curate.docs")
    strict = Store(wh).snapshot("docs@strict")[1].snapshot_id
    ours = Store(wh).read_arrow("docs@strict", ["id"]).column("id")
    theirs = t.scan(snapshot_id=strict, selected_fields=("id",)).to_arrow().column("id")
    assert sorted(ours.to_pylist()) == sorted(theirs.to_pylist())
    assert t.refs()["strict"].snapshot_id == strict  # our tags are Iceberg tags
    # the documented pitfall: the catalog name keys the rows, another name silently sees nothing
    other = SqlCatalog("default", uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
    assert other.list_namespaces() == [] and not other.table_exists("curate.docs")


# ---- the README's snippet and what it says it needs -------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_interop() -> str:
    text = open(os.path.join(REPO, "README.md")).read()
    return text.split("## Interop (outside tools)")[1].split("\n## ")[0]


def test_readme_interop_snippet_runs_as_written(wh):
    """The snippet itself, with only its placeholders filled in: the warehouse path and our table."""
    code = _readme_interop().split("```python\n")[1].split("```")[0]
    assert code.count("/abs/warehouse") == 2 and '"curate.documents"' in code
    ns: dict = {}
    exec(code.replace("/abs/warehouse", wh).replace('"curate.documents"', '"curate.docs"'), ns)
    want = Store(wh).read_arrow("docs@strict", ["id"]).num_rows
    assert ns["strict"] == Store(wh).snapshot("docs@strict")[1].snapshot_id
    assert ns["duckdb"].sql("select count(*) from read_parquet($files)",
                            params={"files": ns["files"]}).fetchall()[0][0] == want


def test_readme_interop_requirements_are_pinned_installed_and_enough():
    """Every `name[extras]==version` the section names is a line of requirements-interop.txt and is
    installed at that version, with its extras' packages (SQLAlchemy and pyarrow for pyiceberg)."""
    import re
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    named = set(re.findall(r"([A-Za-z][\w.-]*(?:\[[\w,-]+\])?==[\w.]+)", _readme_interop()))
    pinned = {line.split("#")[0].strip() for line in open(os.path.join(REPO, "requirements-interop.txt"))} - {""}
    assert {"pyiceberg[sql-sqlite,pyarrow]==0.12.0", "polars==2.1.0", "duckdb==2.0.0", "datasets==5.2.0",
            "soundfile==0.14.0", "trl==1.16.0"} <= named
    assert named <= pinned, named - pinned
    for spec in named:
        req = Requirement(spec)
        assert version(req.name) in req.specifier, spec
        for extra in req.extras:
            for dep in map(Requirement, requires(req.name) or []):
                if dep.marker and dep.marker.evaluate({"extra": extra}):
                    assert version(dep.name) in dep.specifier, (spec, str(dep))
    from pyiceberg.catalog.sql import SqlCatalog  # noqa: F401  (imports SQLAlchemy)


# ---- polars ------------------------------------------------------------------------------
def test_polars_scan_iceberg_reads_a_version_as_store_does(wh):
    import polars as pl
    store = Store(wh)
    t = store.table("docs")
    for tag in ("loose", "strict"):
        snap = store.snapshot(f"docs@{tag}")[1].snapshot_id
        got = pl.scan_iceberg(t, snapshot_id=snap).select("id").collect()["id"].to_list()
        want = store.read_arrow(f"docs@{tag}", ["id"]).column("id").to_pylist()
        assert sorted(got) == sorted(want) and len(got) == len(want)
    # and the current version by default
    assert pl.scan_iceberg(t).select(pl.len()).collect().item() == store.read_arrow("docs", ["id"]).num_rows


# ---- DuckDB ------------------------------------------------------------------------------
def test_duckdb_over_the_snapshot_file_list_but_not_a_glob(wh):
    import duckdb
    store = Store(wh)
    t, snap = store.snapshot("docs@loose")
    files = [task.file.file_path.removeprefix("file://") for task in t.scan(snapshot_id=snap.snapshot_id).plan_files()]
    con = duckdb.connect()
    ids = [r[0] for r in con.execute("select id from read_parquet(?)", [files]).fetchall()]
    want = store.read_arrow("docs@loose", ["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(want)
    # a glob over the data directory reads every version ever written: loose + strict rows
    data_dir = t.location().removeprefix("file://") + "/data"
    assert data_dir == f"{wh}/curate/docs/data"  # the layout the README names
    n_glob = con.execute(f"select count(*) from read_parquet('{data_dir}/**/*.parquet')").fetchone()[0]
    n_strict = store.read_arrow("docs@strict", ["id"]).num_rows
    assert n_glob == len(want) + n_strict > len(want)


def test_a_glob_also_reads_the_dedup_work_files_kept_in_the_data_directory(tmp_path):
    """README: a run with dedup keeps its signatures and decisions under the table's data directory;
    a glob there reads them as if they were rows, without an error."""
    import glob

    import duckdb

    from filters.dedup import Dedup
    from filters.text_basic import normalize_text
    from schemas.engine.runner import Pipeline, RunOptions, run
    from schemas.engine.stage import StageSpec
    from schemas.tables import DOCUMENTS
    wh = str(tmp_path / "wh")
    r = run(Pipeline("dd", DOCUMENTS, DOCUMENTS, [normalize_text, StageSpec(Dedup, {})]),
            RunOptions(inputs=[corpus(tmp_path, n_files=2, limit=60)], output="dd", warehouse=wh, executor="local",
                       progress=False))
    data_dir = f"{wh}/curate/dd/data"
    work = sorted(os.path.relpath(p, data_dir) for p in glob.glob(f"{data_dir}/run-*/_global/*-dedup/**/*.parquet",
                                                                   recursive=True))
    assert any(p.endswith("/decisions.parquet") for p in work) and any("/signatures/" in p for p in work), work
    n_glob = duckdb.sql(f"select count(*) from read_parquet('{data_dir}/**/*.parquet')").fetchall()[0][0]
    assert n_glob > r.accounting["kept"] == Store(wh).read_arrow("dd", ["id"]).num_rows
    warning = next(b for b in _readme_interop().split("\n- ") if b.startswith("**Never glob"))
    assert "run-*/_global/<n>-dedup/signatures/*.parquet" in warning and "decisions.parquet" in warning


# ---- Hugging Face datasets ---------------------------------------------------------------
def _speech_files(wh):
    t, snap = Store(wh).snapshot("speech_sft")
    return [task.file.file_path.removeprefix("file://") for task in t.scan(snapshot_id=snap.snapshot_id).plan_files()]


def test_datasets_loads_speech_sft_parquet_and_the_audio_decodes(wh, tmp_path):
    import datasets
    ds = datasets.load_dataset("parquet", data_files=_speech_files(wh), split="train", cache_dir=str(tmp_path))
    want = Store(wh).read_arrow("speech_sft")
    assert ds.num_rows == want.num_rows and sorted(ds["id"]) == sorted(want.column("id").to_pylist())
    # datasets 5 decodes Audio through torchcodec (FFmpeg); decode=False + soundfile needs neither
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    by_id = {r["id"]: r for r in want.to_pylist()}
    for row in ds:
        x, sr = sf.read(io.BytesIO(row["audio"]["bytes"]))
        assert sr == 16000 and x.ndim == 1 and np.abs(x).max() > 0.01
        with wave.open(io.BytesIO(row["audio"]["bytes"])) as w:  # the README's stdlib alternative
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, x.size)
        assert abs(x.size / sr - by_id[row["id"]]["duration_s"]) < 1e-3
        assert "<audio>" in row["sample"]


def test_datasets_audio_feature_decodes_where_torchcodec_loads(wh, tmp_path):
    import datasets
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except Exception as e:  # noqa: BLE001  the PyPI wheel is a CUDA build; see README "Interop"
        pytest.skip(f"torchcodec does not load here ({type(e).__name__}); decode=False + soundfile is tested")
    ds = datasets.load_dataset("parquet", data_files=_speech_files(wh), split="train", cache_dir=str(tmp_path))
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=16000))
    samples = ds[0]["audio"].get_all_samples()
    assert samples.sample_rate == 16000 and samples.data.shape[-1] > 1000


# ---- TRL ---------------------------------------------------------------------------------
def _texts(wh):
    s = Store(wh)
    yield from (m["content"] for msgs in s.read_arrow("reasoning_sft").column("messages").to_pylist() for m in msgs)
    for col in ("prompt", "chosen", "rejected"):
        yield from s.read_arrow("preferences").column(col).to_pylist()


@pytest.fixture(scope="module")
def tiny(wh):
    """A 2-layer Llama and a byte-level BPE trained on our own tables: no hub download."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    bpe.train_from_iterator(_texts(wh), trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(cfg), LlamaForCausalLM(cfg), tok


def _args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
               logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, **kw)


def _logged(trainer):
    return [h for h in trainer.state.log_history if "loss" in h]


def test_trl_sft_trainer_two_steps_on_reasoning_sft(wh, tiny, tmp_path):
    import datasets
    from trl import SFTConfig, SFTTrainer
    model, _, tok = tiny
    table = Store(wh).read_arrow("reasoning_sft", ["messages"])
    for msgs in table.column("messages").to_pylist():  # the conversation as generated, system prompt first
        assert msgs[0] == {"role": "system", "content": SYSTEM}
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant"]
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=datasets.Dataset(table),
                         args=_args(SFTConfig, tmp_path, max_length=256))
    trainer.train()
    logs = _logged(trainer)
    assert trainer.state.global_step == 2 and len(logs) == 2 and all(np.isfinite(h["loss"]) for h in logs)


@pytest.mark.parametrize("variant", ["standard", "conversational"])
def test_trl_dpo_trainer_two_steps_on_preferences(wh, tiny, tmp_path, variant):
    import datasets
    from trl import DPOConfig, DPOTrainer

    from synth.reasoning_tables import conversational
    model, ref, tok = tiny
    table = Store(wh).read_arrow("preferences", ["prompt", "chosen", "rejected", "system"])
    assert table.num_rows >= 2 and set(table.column("system").to_pylist()) == {SYSTEM}
    if variant == "conversational":
        table = conversational(table)
        assert table.column("prompt")[0].as_py()[0]["role"] == "system"
    trainer = DPOTrainer(model=model, ref_model=ref, processing_class=tok,
                         train_dataset=datasets.Dataset(table.select(["prompt", "chosen", "rejected"])),
                         args=_args(DPOConfig, tmp_path, max_length=256))
    trainer.train()
    logs = _logged(trainer)
    assert trainer.state.global_step == 2 and all(np.isfinite(h["loss"]) for h in logs)


def test_conversational_pairs_carry_the_generation_context():
    from synth.reasoning_tables import conversational
    t = pa.table({"prompt": ["2+2?", "x"], "chosen": ["4", "y"], "rejected": ["5", ""], "system": ["Be brief.", None],
                  "level": [1, 2]})
    out = conversational(t).to_pylist()
    assert out[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert out[1]["prompt"] == [{"role": "user", "content": "x"}]  # no system prompt recorded: none invented
    assert out[0]["chosen"] == [{"role": "assistant", "content": "4"}] and out[1]["rejected"][0]["content"] == ""
    assert out[1]["level"] == 2
    # a table from before the `system` column still converts
    legacy = conversational(t.drop_columns(["system"])).column("prompt")[0].as_py()
    assert legacy == [{"role": "user", "content": "2+2?"}]


# ---- the official openai client against `curate serve` -----------------------------------
@pytest.fixture(scope="module")
def oai(tmp_path_factory):
    """An `openai.OpenAI` client on `curate serve` over a tiny from-scratch built-in checkpoint."""
    import openai
    ck = tiny_checkpoint(str(tmp_path_factory.mktemp("oai") / "ck"))
    with serving(ck) as srv:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", api_key="none",
                               max_retries=0, timeout=60)
        yield client, srv.model_id
        client.close()


ASK = [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": "Ava has 3 apples."}]


def test_openai_client_plain_completion_with_usage(oai):
    client, model = oai
    r = client.chat.completions.create(model=model, messages=ASK, max_completion_tokens=6, seed=1)
    assert r.object == "chat.completion" and r.model == model and len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0 and c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_openai_client_n_choices_and_stop(oai):
    client, model = oai
    r = client.chat.completions.create(model=model, messages=ASK, n=3, max_completion_tokens=30, seed=2,
                                       temperature=1.0, top_p=0.95)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1  # one seed per choice
    text = r.choices[0].message.content
    assert len(text) >= 6, text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = client.chat.completions.create(model=model, messages=ASK, max_completion_tokens=30, seed=2,
                                         temperature=1.0, top_p=0.95, stop=[stop, "@@never@@"])
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_openai_client_streams_deltas_and_usage(oai):
    client, model = oai
    ask = dict(model=model, messages=ASK, n=2, max_completion_tokens=12, seed=3)
    whole = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks and all(ch.object == "chat.completion.chunk" for ch in chunks)
    *deltas, last = chunks
    assert last.choices == [] and last.usage.total_tokens == whole.usage.total_tokens
    for c in whole.choices:
        mine = [ch.choices[0] for ch in deltas if ch.choices[0].index == c.index]
        assert mine[0].delta.role == "assistant"
        assert "".join(m.delta.content or "" for m in mine) == c.message.content
        assert [m.finish_reason for m in mine if m.finish_reason] == [c.finish_reason]
    # the SDK's own accumulator (it refuses a "length" finish, so a stop string ends this one)
    text = whole.choices[0].message.content
    assert len(text) >= 6, text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    with client.chat.completions.stream(model=model, messages=ASK, max_completion_tokens=12, seed=3,
                                        stop=stop) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == text[:text.index(stop)] and final.choices[0].finish_reason == "stop"


def test_openai_client_lists_models(oai):
    client, model = oai
    assert [m.id for m in client.models.list()] == [model]
    assert client.models.retrieve(model).id == model


def test_openai_client_gets_bad_request_errors_naming_the_field(oai):
    import openai
    client, model = oai
    for kw, param in [(dict(n=99), "n"), (dict(max_completion_tokens=10 ** 6), "max_completion_tokens"),
                      (dict(messages=[{"role": "narrator", "content": "hi"}]), "messages[0].role"),
                      (dict(temperature="hot"), "temperature")]:  # (this client refuses lone surrogates itself)
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**{"model": model, "messages": ASK, **kw})
        assert e.value.status_code == 400 and e.value.param == param, (kw, e.value.body)
        assert e.value.type == "invalid_request_error"
