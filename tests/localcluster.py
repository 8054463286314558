"""A multi-node Ray cluster on this machine, the way a team starts one: `ray start --head`, then
`ray start --address` per worker node, each a `--block` process of its own with every port
named (free ones: other Ray clusters may run beside it). A node is stopped, or killed mid-run,
by its own processes' ids (all of a node's processes share the session of its `ray start`);
`ray stop` would stop every Ray on the machine."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from helpers import free_port

BIN = os.path.dirname(sys.executable)
# Ports Ray would otherwise take at fixed defaults (6379, 8265, 52365, 10001) or pick itself.
NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
HEAD_PORTS = ("--port", "--dashboard-port", "--ray-client-server-port")


@dataclass
class Node:
    proc: subprocess.Popen
    name: str
    num_cpus: float
    num_gpus: float
    node_id: str = ""
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """The id as lineage records it (`execution.placement`)."""
        return self.node_id[:12]

    def processes(self) -> list[int]:
        """Pids of this node's processes: the session of its `ray start` (raylet, agents, workers),
        and their children in sessions of their own (a submitted job's driver)."""
        return with_descendants(session_pids(self.proc.pid))

    def running_tasks(self) -> list[str]:
        """Process titles of this node's Ray workers busy with a task or actor (`ray::Name`)."""
        out = []
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and not title.startswith("ray::IDLE"):
                out.append(title)
        return out

    def kill(self) -> None:
        """SIGKILL every process of this node, as a lost machine would leave it."""
        for _ in range(3):  # a dying raylet may still spawn a worker: sweep until none is left
            pids = self.processes()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not pids:
                break
            time.sleep(0.2)
        self.proc.wait()


def with_descendants(pids: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return sorted(out)


def session_pids(sid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                pids.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


class LocalCluster:
    def __init__(self, temp_dir: str, object_store_mb: int = 200):
        self.temp_dir = temp_dir
        self.object_store = str(object_store_mb << 20)
        self.env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[Node] = []
        self.gcs_port = self.dashboard_port = 0

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        """The GCS address drivers and nodes join (`RAY_ADDRESS`); Ray resolves it to the
        machine's address, which the nodes listen on."""
        return f"127.0.0.1:{self.gcs_port}"

    def _start(self, name: str, extra: list[str], ports: tuple[str, ...], num_cpus: float, num_gpus: float) -> Node:
        given = {flag: free_port() for flag in ports}
        name = f"{name}-{os.getpid()}-{len(self.nodes)}"
        argv = [os.path.join(BIN, "ray"), "start", *extra, "--block", "--disable-usage-stats", "--node-name", name,
                "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus), "--object-store-memory", self.object_store,
                # a temp dir per node: nodes sharing one share its runtime_resources, and one node's
                # runtime-env agent deletes a job's working_dir while another node's workers run in it
                "--temp-dir", os.path.join(self.temp_dir, str(len(self.nodes)))]
        for flag, port in given.items():
            argv += [flag, str(port)]
        os.makedirs(self.temp_dir, exist_ok=True)
        with open(os.path.join(self.temp_dir, f"{name}.out"), "wb") as out:  # what `ray start` says
            proc = subprocess.Popen(argv, env=self.env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        node = Node(proc, name, num_cpus, num_gpus, ports=given)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: float = 1) -> Node:
        node = self._start("head", ["--head", "--dashboard-host", "127.0.0.1"], HEAD_PORTS + NODE_PORTS, num_cpus, 0)
        self.gcs_port, self.dashboard_port = node.ports["--port"], node.ports["--dashboard-port"]
        return node

    def add_node(self, name: str, num_cpus: float = 1, num_gpus: float = 0) -> Node:
        """Start a worker node and wait until it is alive. One at a time: nodes of one session
        starting together on one machine pick the same socket names (a raylet then aborts on
        `bind: Address already in use`)."""
        self.wait()
        node = self._start(name, ["--address", self.address], NODE_PORTS, num_cpus, num_gpus)
        self.wait()
        return node

    def alive(self) -> list[dict]:
        """The cluster's live nodes as the state API (the dashboard) reports them."""
        from ray.util.state import list_nodes
        try:
            nodes = list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")], timeout=10,
                               raise_on_missing_output=False)
        except Exception:  # noqa: BLE001 - the dashboard is not up yet
            return []
        return [n.__dict__ if hasattr(n, "__dict__") else dict(n) for n in nodes]

    def wait(self, timeout: float = 120) -> None:
        """Until every started node is alive; gives each node its Ray node id."""
        deadline = time.time() + timeout
        while True:
            for node in self.nodes:
                if node.proc.poll() is not None and not node.node_id:
                    said = open(os.path.join(self.temp_dir, f"{node.name}.out"), errors="replace").read()[-1500:]
                    raise RuntimeError(f"ray start of {node.name} exited with {node.proc.returncode}: {said}")
            by_name = {n["node_name"]: n["node_id"] for n in self.alive()}
            for node in self.nodes:
                node.node_id = node.node_id or by_name.get(node.name, "")
            if all(n.node_id for n in self.nodes):
                return
            if time.time() > deadline:
                raise TimeoutError(f"nodes not alive after {timeout}s: {by_name}; {self.log_tail()}")
            time.sleep(1)

    def log_tail(self) -> str:
        logs = os.path.join(self.temp_dir, "0", "session_latest", "logs")
        out = []
        for name in ("raylet.err", "gcs_server.err", "dashboard_agent.log"):
            p = os.path.join(logs, name)
            if os.path.exists(p):
                out.append(f"{name}: " + open(p, errors="replace").read()[-800:])
        return "\n".join(out)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextmanager
def head_cpu_gpu(temp_dir: str) -> Iterator[LocalCluster]:
    """The layout the cluster tests share: a 1-CPU head, a 1-CPU node, and a 2-CPU node with one
    (logical) GPU, so GPU-declared stages land on that node only; stopped by its own pids."""
    c = LocalCluster(temp_dir)
    try:
        c.start_head(num_cpus=1)
        c.add_node("cpu", num_cpus=1)
        c.add_node("gpu", num_cpus=2, num_gpus=1)
        yield c
    finally:
        c.stop()
