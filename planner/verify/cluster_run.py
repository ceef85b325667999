"""Run a cluster plan on this machine: each worker a real ggml-rpc-server on loopback (the CPU backend, its
memory capped at the node's RAM), the main host's llama-server started with the plan's own line on a shape twin
of the plan's types, optionally every link slowed by a delay (a relay that holds each packet for half the round
trip each way). What comes back: the buffers llama.cpp logged per device beside the plan's, and the tok/s it
measured beside the prediction.

Needs llama.cpp's programs built with -DGGML_RPC=ON (ggml-rpc-server, llama-server: .ci/build-llama-tools.sh).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import PlannerError
from planner.export import cluster as cx
from planner.model.spec import ModelSpec
from planner.optimize.cluster import ClusterPlan
from planner.verify.child import parse_buffers

MiB = 1 << 20
SERVER_SLACK = 384 * MiB  # address space an rpc-server needs beyond its buffers: code, libraries, thread stacks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Relay:
    """A TCP relay from listen_port to target that holds each chunk for delay_s before passing it on."""
    target: tuple[str, int]
    delay_s: float
    listen_port: int = field(default_factory=free_port)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Relay:
        self._sock = socket.create_server(("127.0.0.1", self.listen_port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        """Chunks in order, each sent delay_s after it arrived (a line of delay, not of throughput)."""
        import queue
        q: queue.Queue = queue.Queue()

        def sender() -> None:
            while True:
                item = q.get()
                if item is None:  # the sender closed its side: pass that on (a server serves one client at a time)
                    for how in (socket.SHUT_WR,):
                        try:
                            dst.shutdown(how)
                        except OSError:
                            pass
                    return
                due, data = item
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    return
        threading.Thread(target=sender, daemon=True).start()
        while True:
            try:
                data = src.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                q.put(None)
                return
            q.put((time.perf_counter() + self.delay_s, data))


def _limit(nbytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
    return apply


def start_workers(cp: ClusterPlan, bin_dir: str, log_dir: Path) -> list[subprocess.Popen]:
    """Each worker's ggml-rpc-server, run with the plan's own line, its address space capped at its device's
    capacity (plus what the program itself needs)."""
    procs = []
    for n in cp.nodes:
        if n.main:
            continue
        if n.host not in ("127.0.0.1", "localhost"):
            raise PlannerError(f"node {n.node} is at {n.host}: only a cluster of loopback servers runs here")
        cap = sum(cp.hardware.gpus[i].vram_total_bytes for i in n.devices)
        args = shlex.split(cx.rpc_server_line(cp, n.node))
        log = open(log_dir / f"rpc-{n.node}.log", "w")
        env = {**os.environ, "LLAMA_CACHE": str(log_dir / f"rpc-cache-{n.node}")}  # -c's cache: not the user's
        procs.append(subprocess.Popen([os.path.join(bin_dir, args[0]), *args[1:]], stdout=log, env=env,
                                      stderr=subprocess.STDOUT, preexec_fn=_limit(cap + SERVER_SLACK)))
    deadline = time.time() + 30
    for n in (x for x in cp.nodes if not x.main):
        while True:
            try:
                socket.create_connection((n.host, n.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    stop(procs)
                    raise PlannerError(f"ggml-rpc-server of {n.node} did not listen on {n.host}:{n.port}") from None
                time.sleep(0.1)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def run_main(cp: ClusterPlan, spec: ModelSpec, model_path: str, bin_dir: str, log: Path, threads: int,
             delay_ms: float = 0.0, n_predict: int = 32, prompt_tokens: int = 64, repeats: int = 2) -> dict:
    """llama-server with the plan's line (its --rpc through delaying relays when delay_ms), one completion;
    {buffers (llama.cpp's, named as the plan names them), tg and pp tok/s measured, log tail}."""
    args = shlex.split(cx.main_line(cp, spec, model_path, threads))
    servers = cx.rpc_servers(cp)
    relays = []
    if delay_ms:
        relays = [Relay((h, int(p)), delay_ms / 2e3).start() for h, p in (s.rsplit(":", 1) for s in servers)]
        via = {s: f"127.0.0.1:{r.listen_port}" for s, r in zip(servers, relays, strict=True)}
        args[args.index("--rpc") + 1] = ",".join(via[s] for s in servers)
    port = free_port()
    with open(log, "w") as f:
        p = subprocess.Popen([os.path.join(bin_dir, args[0]), *args[1:], "--port", str(port), "--no-warmup", "-lv", "4"],
                             stdout=f, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, p, log)
        prompt = " ".join(["hello"] * prompt_tokens)
        outs = [_post(base + "/completion", {"prompt": prompt, "n_predict": n_predict, "ignore_eos": True,
                                             "cache_prompt": False}) for _ in range(repeats)]
        out = max(outs, key=lambda o: o.get("timings", {}).get("predicted_per_second", 0))  # the least disturbed
        t = out.get("timings", {})
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        for r in relays:
            r.stop()
    text = log.read_text()
    if delay_ms:  # the relays' ports back to the servers' own, so that buffers carry the plan's names
        for s, r in zip(servers, relays, strict=True):
            text = text.replace(f"127.0.0.1:{r.listen_port}", s)
    return {"buffers": parse_buffers(text), "tg_tps": t.get("predicted_per_second"),
            "pp_tps": t.get("prompt_per_second"), "n_predicted": out.get("tokens_predicted")}


def _wait_healthy(base: str, p: subprocess.Popen, log: Path, timeout_s: float = 900) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if p.poll() is not None:
            raise PlannerError(f"llama-server exited ({p.returncode}): {log.read_text()[-800:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:  # not listening yet, or loading (503)
            pass
        time.sleep(0.2)
    raise PlannerError(f"llama-server not healthy after {time.time() - t0:.0f} s: " + log.read_text()[-800:])


def predicted_buffers(cp: ClusterPlan) -> dict[str, dict[str, float]]:
    """The plan's buffers per device, named as parse_buffers names llama.cpp's (RPC@host:port, CPU)."""
    out: dict[str, dict[str, float]] = {}
    for d in cp.result.best.estimate.devices:
        for k, v in d.buffers_mib.items():
            name, kind = k.rsplit(" ", 1)
            name = re.sub(r"RPC\d+\[([^\]]*)\]", r"RPC@\1", name)
            out.setdefault(name, {})[kind] = v
    return out


def logged_by_device(buffers: dict[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for k, v in buffers.items():
        name, kind = k.rsplit(" ", 1)
        out.setdefault(name, {})[kind] = v
    return out
