"""Remote storage end to end: inputs, outputs, markers and the warehouse on an S3-protocol server
(moto's, started here), the catalog on PostgreSQL (started here), as a team would deploy it.

Each test gets its own bucket and database; both servers run on 127.0.0.1 at free ports and are
stopped by their process ids. Results are compared with the same run on the local default
(SQLite + a directory), which must stay unchanged."""
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import corpus, counts, run_demo
from schemas import filesystem as fsys
from schemas.store import Store, StoreError
from servers import Postgres, S3Server, postgres_bindir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg():
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, postgres) not found: `apt-get install postgresql` "
                    "(make test-debs installs it)")
    server = Postgres(bindir)
    yield server
    server.stop()


class Remote:
    def __init__(self, s3, pg):
        self.bucket = s3.bucket()
        self.db = pg.database()
        self.warehouse = f"s3://{self.bucket}/wh"
        self.catalog = {"uri": self.db, "warehouse": self.warehouse}
        self.env = {**s3.env, "CURATE_CATALOG": json.dumps(self.catalog)}

    def upload(self, local_dir, prefix="in"):
        for name in sorted(os.listdir(local_dir)):
            with open(os.path.join(local_dir, name), "rb") as f:
                fsys.write_bytes(f"s3://{self.bucket}/{prefix}/{name}", f.read())
        return f"s3://{self.bucket}/{prefix}"


@pytest.fixture
def remote(s3, pg, monkeypatch):
    r = Remote(s3, pg)
    for k, v in r.env.items():
        monkeypatch.setenv(k, v)
    return r  # conftest puts the environment and the process's catalog settings back afterwards


def _ids(store, ref):
    return sorted(store.read_arrow(ref, ["id"]).column("id").to_pylist())


def _inputs(tmp_path):
    """Real text in three formats: JSONL (with bad lines), gzipped JSONL, Parquet of several row groups."""
    src = corpus(tmp_path, n_files=2, limit=160)
    names = sorted(os.listdir(src))
    with open(os.path.join(src, names[0]), "ab") as f:
        f.write(b"not json\n\xff\xfe broken utf8\n")
    with open(os.path.join(src, names[1]), "rb") as f:
        lines = f.read().splitlines(keepends=True)
    os.remove(os.path.join(src, names[1]))
    with gzip.open(os.path.join(src, "gz.jsonl.gz"), "wb") as f:
        f.writelines(lines[:40])
    rows = [json.loads(line) for line in lines[40:]]
    assert len(rows) > 30
    pq.write_table(pa.table({"text": [r["text"] for r in rows]}), os.path.join(src, "pq.parquet"), row_group_size=7)
    return src


def test_s3_settings_come_from_the_catalog_first_then_the_aws_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert fsys.s3_options({}) == {"scheme": "http", "endpoint_override": "10.0.0.1:9000", "access_key": "env-key",
                                   "secret_key": "env-secret", "region": "us-east-1"}
    props = {"s3.endpoint": "https://minio.internal", "s3.access-key-id": "cat-key", "s3.region": "eu-west-1"}
    # the catalog's key comes without the environment's secret: never a key of one and a secret of another
    assert fsys.s3_options(props) == {"scheme": "https", "endpoint_override": "minio.internal",
                                      "access_key": "cat-key", "region": "eu-west-1"}
    done = fsys.catalog_s3_properties({"uri": "postgresql+psycopg://u@h/db"})
    assert done["s3.endpoint"] == "http://10.0.0.1:9000" and done["s3.region"] == "us-east-1"
    assert "s3.secret-access-key" not in done  # credentials stay in the environment
    # Local paths are untouched: the same fingerprint as before (run keys of local runs do not move).
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"text": "x"}\n')
    st = os.stat(f)
    assert fsys.fingerprint(str(f)) == f"{st.st_size}:{st.st_mtime_ns}" == fsys.fingerprint(f"file://{f}")
    assert fsys.filesystem(f"file://{f}")[1] == str(f) and not fsys.is_remote(f"file://{f}")


def test_filesystem_on_s3_lists_globs_and_fingerprints_like_local(remote):
    b = f"s3://{remote.bucket}"
    for key in ("d/a.jsonl", "d/sub/b.jsonl", "d/sub/deep/c.jsonl", "d/x.parquet", "other/a.jsonl"):
        fsys.write_bytes(f"{b}/{key}", b'{"text": "x"}\n')
    assert fsys.isdir(f"{b}/d") and not fsys.isdir(f"{b}/d/a.jsonl") and not fsys.exists(f"{b}/nope")
    assert fsys.walk(f"{b}/d") == [f"{b}/d/a.jsonl", f"{b}/d/sub/b.jsonl", f"{b}/d/sub/deep/c.jsonl",
                                   f"{b}/d/x.parquet"]
    assert fsys.glob(f"{b}/d/*.jsonl") == [f"{b}/d/a.jsonl"]  # `*` stays within one part, as glob does
    assert fsys.glob(f"{b}/d/**/*.jsonl") == [f"{b}/d/a.jsonl", f"{b}/d/sub/b.jsonl", f"{b}/d/sub/deep/c.jsonl"]
    assert fsys.glob(f"{b}/*/a.jsonl") == [f"{b}/d/a.jsonl", f"{b}/other/a.jsonl"]
    assert fsys.glob(f"{b}/d/s?b/[b]*") == [f"{b}/d/sub/b.jsonl"]
    before = fsys.fingerprint(f"{b}/d/a.jsonl")
    fsys.write_bytes(f"{b}/d/a.jsonl", b'{"text": "y"}\n')  # same size, same second
    assert fsys.fingerprint(f"{b}/d/a.jsonl") != before
    fsys.write_json(f"{b}/m/marker.json", {"k": [1, 2]})
    assert fsys.read_json(f"{b}/m/marker.json") == {"k": [1, 2]}
    with fsys.open_input(f"{b}/d/sub/b.jsonl") as f:
        f.seek(2)
        assert f.readline() == b'text": "x"}\n'


def test_text_pipeline_reads_s3_inputs_publishes_to_s3_with_a_postgres_catalog(remote, tmp_path):
    src = _inputs(tmp_path)
    prefix = remote.upload(src)
    got = run_demo(None, [f"{prefix}/*.jsonl*", f"{prefix}/pq.parquet"], shard_rows=10)
    want = run_demo(str(tmp_path / "local"), [f"{src}/*.jsonl*", f"{src}/pq.parquet"], shard_rows=10, catalog={})
    acc = got.accounting
    assert acc["rows_in"] == acc["kept"] + acc["rejected"] == want.accounting["rows_in"] > 100
    assert acc["rejects_by_reason"]["malformed_json"] >= 1 and acc["rejects_by_reason"]["invalid_utf8"] >= 1
    assert acc["shards"] == want.accounting["shards"] >= 5  # several Parquet row-group shards
    store, local = Store(), Store(str(tmp_path / "local"), {})  # {}: the local default, whatever the env says
    assert store.location == remote.warehouse
    for table in ("docs", "docs_rejects"):
        assert _ids(store, table) == _ids(local, table)
        paths = store.files(table).column("file_path").to_pylist()
        assert paths and all(p.startswith(f"{remote.warehouse}/curate/{table}/data/") for p in paths)
    props = store.properties("docs")
    assert counts(props["accounting"]) == counts(want.accounting)
    assert props["inputs"]["files"] == {f"{prefix}/{n}": fp for n, fp in
                                        ((os.path.basename(k), v) for k, v in props["inputs"]["files"].items())}
    assert all(k.startswith("s3://") for k in props["inputs"]["files"])
    # The catalog is PostgreSQL's, not a SQLite file; nothing of the run landed on local disk.
    import psycopg
    with psycopg.connect(remote.db.replace("+psycopg", "")) as conn:
        rows = conn.execute("select table_name, metadata_location from iceberg_tables order by 1").fetchall()
    assert [r[0] for r in rows] == ["docs", "docs_rejects"]
    assert all(r[1].startswith(f"{remote.warehouse}/curate/") for r in rows)
    assert not os.path.exists("s3:") and not os.path.exists(os.path.join(REPO, "s3:"))
    # A store table on S3 as the input of the next run (table shards: data files on S3).
    again = run_demo(None, "docs", output="docs2", min_words=20)
    assert again.accounting["rows_in"] == acc["kept"] and 0 < again.accounting["kept"] < acc["kept"]
    assert set(_ids(store, "docs2")) < set(_ids(store, "docs"))


def test_curate_cli_on_the_remote_warehouse(remote, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipelines.cli import main
    src = corpus(tmp_path, n_files=2, limit=40)
    run_demo(None, remote.upload(src), tag="v1")
    monkeypatch.delenv("CURATE_CATALOG")  # the command line alone names catalog and storage
    fsys.use_catalog(None)
    base = ["--warehouse", remote.warehouse, "--catalog", remote.db]

    def cli(*args):
        res = CliRunner().invoke(main, [*base, *args])
        assert res.exit_code == 0, (args, res.output)
        return res.output
    versions = json.loads(cli("versions", "docs", "--json"))
    assert len(versions) == 1 and versions[0]["tags"] == ["v1"] and versions[0]["current"]
    stats = json.loads(cli("stats", "docs@v1", "--json"))
    assert stats["rows"] == versions[0]["rows"] > 0 and stats["files"] == 2
    shown = [json.loads(line) for line in cli("show", "docs", "-n", "3", "--json").splitlines()]
    assert len(shown) == 3 and all(r["text"] for r in shown)
    assert json.loads(cli("lineage", "docs", "--json"))["accounting"]["kept"] == stats["rows"]
    assert "docs_rejects" in cli("tables")
    # An object-store warehouse without a catalog is one line, not a traceback.
    monkeypatch.delenv("CURATE_CATALOG")
    res = CliRunner().invoke(main, ["--warehouse", remote.warehouse, "tables"])
    assert res.exit_code == 2 and "needs a shared catalog" in res.output and "Traceback" not in res.output
    with pytest.raises(StoreError, match="needs a shared catalog"):
        Store(remote.warehouse)


def test_sweep_on_s3_removes_only_unreferenced_files(remote, tmp_path):
    run_demo(None, remote.upload(corpus(tmp_path, n_files=2, limit=40)))
    store = Store()
    loc = store.table("docs").location()
    orphan = f"{loc}/metadata/99999-lost-commit.metadata.json"
    fsys.write_bytes(orphan, b"x")
    removed = store.sweep("docs", older_than_s=0)
    assert removed == [fsys.filesystem(orphan)[1]] and not fsys.exists(orphan)
    assert store.read_arrow("docs").num_rows > 0 and store.properties("docs")["accounting"]["kept"] > 0


def _demo_cmd(remote, src, *extra):
    return [sys.executable, "pipelines/demo.py", "--input", src, "--warehouse", remote.warehouse,
            "--catalog", remote.db, "--quiet", *extra]


@pytest.mark.parametrize("phase", ["shard-written:2", pytest.param("rejects-committed", marks=pytest.mark.slow)])
def test_a_kill_on_s3_resumes_from_s3_markers_and_publishes_once(remote, tmp_path, phase):
    src = corpus(tmp_path, n_files=4, limit=40)
    prefix = remote.upload(src)
    env = {k: v for k, v in os.environ.items() if k != "CURATE_CATALOG"}  # --catalog names it
    cmd = _demo_cmd(remote, prefix, "--executor", "local", "--tag", "t1")
    killed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**env, "CURATE_FAILPOINT": phase})
    assert killed.returncode == -9, killed.stderr[-2000:]
    markers = [p for p in fsys.walk(remote.warehouse) if "/_markers/" in p]
    store = Store()
    if phase.startswith("shard-written"):
        assert len(markers) == 2 and store.versions("documents_demo") == []
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if phase.startswith("shard-written"):
        assert "resuming run" in rerun.stderr and "2 processed, 2 resumed" in rerun.stdout
    clean = run_demo(str(tmp_path / "clean"), src, output="documents_demo", tag="t1", catalog={})
    want = Store(str(tmp_path / "clean"), {})
    for table in ("documents_demo", "documents_demo_rejects"):
        assert len(store.versions(table)) == 1, table
        assert _ids(store, f"{table}@t1") == _ids(want, f"{table}@t1")
    assert counts(store.properties("documents_demo")["accounting"]) == counts(clean.accounting)


def test_a_corrupt_input_on_s3_is_the_same_one_line_error_as_locally(remote, tmp_path):
    from schemas.engine.inputs import InputError
    with pytest.raises(InputError, match=f"input 's3://{remote.bucket}/nope/' matches no file"):
        run_demo(None, f"s3://{remote.bucket}/nope/")
    src = tmp_path / "bad"
    src.mkdir()
    pq.write_table(pa.table({"text": ["a long enough text here"] * 50}), src / "t.parquet", row_group_size=10)
    data = (src / "t.parquet").read_bytes()
    (src / "t.parquet").write_bytes(data[: len(data) // 2])  # truncated: no footer
    (src / "g.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one two three four five six"}\n' * 200)[:-40])
    prefix = remote.upload(str(src))
    for name in ("t.parquet", "g.jsonl.gz"):
        lines = {}
        for where, path, wh in (("local", str(src / name), str(tmp_path / "wh")), ("s3", f"{prefix}/{name}", None)):
            err = subprocess.run(_demo_cmd(remote, path, "--executor", "local") if where == "s3" else
                                 [sys.executable, "pipelines/demo.py", "--input", path, "--warehouse", wh,
                                  "--quiet", "--executor", "local"],
                                 cwd=REPO, capture_output=True, text=True, timeout=300,
                                 env={k: v for k, v in os.environ.items() if k != "CURATE_CATALOG"})
            assert err.returncode == 2 and "Traceback" not in err.stderr, err.stderr[-2000:]
            line = [x for x in err.stderr.splitlines() if x.startswith("error:")]
            assert len(line) == 1, err.stderr
            lines[where] = line[0].replace(path, "FILE")
        assert lines["local"] == lines["s3"] and "error: input file FILE" in lines["s3"], lines


def test_first_opens_of_a_fresh_postgres_catalog_at_once_all_succeed(pg, tmp_path):
    """Concurrent first use creates the SQL catalog's own tables twice; the loser's DuplicateTable
    (a ProgrammingError, not an IntegrityError) is retried. Without that, 8 of 80 opens failed here."""
    import threading
    errors = []

    def open_store(db):
        try:
            Store(None, {"uri": db, "warehouse": f"file://{tmp_path}/wh"})
        except Exception as e:  # noqa: BLE001 - collected and shown below
            errors.append(repr(e)[:300])

    for _ in range(24):
        db = pg.database()
        threads = [threading.Thread(target=open_store, args=(db,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_reads_and_writes_s3(remote, tmp_path):
    """Embedded Ray: the workers reach S3 through the environment the script exported."""
    src = corpus(tmp_path, n_files=3, limit=40)
    prefix = remote.upload(src)
    env = {k: v for k, v in os.environ.items() if k != "CURATE_CATALOG"}
    proc = subprocess.run(_demo_cmd(remote, prefix, "--executor", "ray", "--num-cpus", "2"), cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 processed, 0 resumed" in proc.stdout
    clean = run_demo(str(tmp_path / "clean"), src, output="documents_demo", catalog={})
    assert _ids(Store(), "documents_demo") == _ids(Store(str(tmp_path / "clean"), {}), "documents_demo")
    assert counts(Store().properties("documents_demo")["accounting"]) == counts(clean.accounting)


@pytest.mark.slow
def test_two_identical_runs_at_once_on_s3_publish_one_version(remote, tmp_path):
    """No flock on object storage: both runs process the shards, the publish is once per run id."""
    prefix = remote.upload(corpus(tmp_path, n_files=4, limit=40))
    env = {k: v for k, v in os.environ.items() if k != "CURATE_CATALOG"}
    cmd = [sys.executable, "tests/slow_pipeline.py", "--input", prefix, "--warehouse", remote.warehouse,
           "--catalog", remote.db, "--quiet", "--executor", "local", "--pause", "0.5"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    published = {line.split()[1] for out, _ in outs for line in out.splitlines() if line.startswith("published")}
    assert len(published) == 1, outs
    store = Store()
    assert len(store.versions("slow_docs")) == 1 and len(store.versions("slow_docs_rejects")) == 1


@pytest.mark.slow
@pytest.mark.ray
def test_ray_job_submit_gets_the_storage_settings_from_its_runtime_env(remote, tmp_path):
    """A head started without any AWS or catalog variable; the job's runtime_env carries them
    (README "Remote storage and a shared catalog") to its driver and workers."""
    import time

    from helpers import free_port, kill_session
    prefix = remote.upload(corpus(tmp_path, n_files=2, limit=40))
    bin_dir = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CURATE_CATALOG", "RAY_ADDRESS"))}
    env.update(PATH=bin_dir + os.pathsep + os.environ["PATH"], RAY_AUTH_MODE="disabled")
    dash, temp = free_port(), f"/tmp/rr{os.getpid()}"
    head = subprocess.Popen(
        [os.path.join(bin_dir, "ray"), "start", "--head", "--num-cpus", "2", "--object-store-memory", "500000000",
         "--disable-usage-stats", "--temp-dir", temp, "--port", str(free_port()), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dash), "--dashboard-agent-listen-port", str(free_port()),
         "--ray-client-server-port", str(free_port()), "--metrics-export-port", str(free_port()), "--block"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runtime = {"env_vars": remote.env}  # AWS_* and CURATE_CATALOG
        submit = [os.path.join(bin_dir, "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}",
                  "--working-dir", ".", "--runtime-env-json", json.dumps(runtime), "--",
                  "python", "pipelines/demo.py", "--input", prefix, "--quiet"]
        deadline = time.time() + 120
        while True:  # the Jobs API answers once the dashboard is up
            res = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            if res.returncode == 0 or time.time() > deadline or "Connection" not in res.stdout + res.stderr:
                break
            time.sleep(2)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert "published documents_demo@" in res.stdout and "2 processed" in res.stdout
        clean = run_demo(str(tmp_path / "clean"), prefix, output="documents_demo", catalog={})
        assert counts(Store().properties("documents_demo")["accounting"]) == counts(clean.accounting)
    finally:
        head.kill()
        kill_session(head.pid)
        head.wait()
        subprocess.run(["rm", "-rf", temp])


@pytest.mark.slow
def test_text_curation_pipeline_on_s3_and_postgres_equals_the_local_run(remote, tmp_path):
    """The real text pipeline (dedup, decontamination, Gopher, fastText; PII by patterns only):
    inputs and tables on S3, catalog in PostgreSQL; scratch files (dedup work, model) local."""
    from pipelines.demo_corpus import write_text_curation_corpus
    src = str(tmp_path / "src")
    write_text_curation_corpus(src)
    prefix = remote.upload(src)
    env = {**{k: v for k, v in os.environ.items() if k != "CURATE_CATALOG"}, "CURATE_WORK_DIR": str(tmp_path / "work")}
    common = ["--executor", "local", "--quiet", "--spacy-model", "", "--shard-mb", "0.05", "--tag", "t1"]
    runs = {}
    for where, args in (("s3", ["--input", prefix, "--warehouse", remote.warehouse, "--catalog", remote.db]),
                        ("local", ["--input", src, "--warehouse", str(tmp_path / "wh")])):
        runs[where] = subprocess.run([sys.executable, "pipelines/text_curation.py", *args, *common], cwd=REPO,
                                     env=env, capture_output=True, text=True, timeout=600)
        assert runs[where].returncode == 0, runs[where].stderr[-3000:]
    got, want = Store(), Store(str(tmp_path / "wh"), {})
    for table in ("documents", "documents_rejects"):
        assert _ids(got, f"{table}@t1") == _ids(want, f"{table}@t1") != []
    assert counts(got.properties("documents")["accounting"]) == counts(want.properties("documents")["accounting"])
    assert os.listdir(tmp_path / "work")  # scratch went to CURATE_WORK_DIR, not to a path named "s3:"


@pytest.mark.slow
def test_an_unreachable_catalog_is_one_line_without_its_password(monkeypatch):
    from click.testing import CliRunner

    from helpers import free_port
    from pipelines.cli import main
    monkeypatch.delenv("CURATE_CATALOG", raising=False)  # the CLI's own --catalog, not one from the shell
    url = f"postgresql+psycopg://curate:s3cret@127.0.0.1:{free_port()}/x"
    res = CliRunner().invoke(main, ["--catalog", url, "--warehouse", "s3://bucket/wh", "tables"])
    assert res.exit_code == 2 and "error: cannot open the catalog" in res.output, res.output
    assert "s3cret" not in res.output and "curate:***@" in res.output
