"""sandboxkit benchmarks: every figure against raw docker-py (the floor) and llm-sandbox (the peer).

    python benchmarks/run.py [--quick] [--json PATH] [--only NAME_OR_PREFIX,...]

One line per figure, ``NAME sandboxkit=<median> baseline=<median> ratio=<r>`` with docker-py as
the baseline, and ``NAME.vs_llm-sandbox ...`` with llm-sandbox as the baseline where it can do
the same thing. The ``hardening_*`` lines put the Docker provider against itself without its
hardened defaults (capabilities, no-new-privileges, default CPU and memory caps; runc both), the
``runsc_*`` lines its gVisor runtime against runc (skipped when the engine has no runsc). The
``modal_*`` lines put sandboxkit's Modal provider, through the project's
Modal emulator, against its Docker provider (``sandboxkit=`` is Modal, ``baseline=`` Docker);
the ``bwrap_*`` lines put its daemon-less bwrap provider against its Docker provider the same way.
Times are milliseconds, memory MiB. All contenders run in the same process (the live-sandbox
figures in fresh child processes), against the same daemon and the same local image, in
interleaved rounds with a shuffled order inside each round, so load from elsewhere on the
machine falls on all of them alike; the ratios are what to compare across machines.
``--quick`` takes fewer rounds (under 2 minutes); the full run takes the median of at least 15.

The peer needs ``pip install -r benchmarks/requirements.txt``; without it, its lines are skipped
with the reason printed. Every container the run creates carries ``sandboxkit.label.bench=<run
id>`` and is removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clients
import network

BASELINE = "docker-py"
#: A contender that fails this many samples of a figure is dropped from it.
MAX_FAILURES = 3
#: Where a missing contender comes from.
WHY_MISSING = {
    "llm-sandbox": "; pip install -r benchmarks/requirements.txt",
    "sandboxkit-modal": "; install plugins/modal (scripts/setup.sh does)",
    "sandboxkit-bwrap": "; install plugins/bwrap (scripts/setup.sh does)",
}
PEER = "llm-sandbox"
MIB = 1 << 20


@dataclasses.dataclass
class Figure:
    """One measured quantity: how to take a sample per contender, and the target ratio to docker-py."""

    name: str
    what: str
    run: Callable[[clients.Client, Context], float]
    unit: str = "ms"
    #: rounds in a full run / in --quick
    rounds: tuple[int, int] = (15, 3)
    #: samples per contender per round
    inner: int = 1
    #: (operator, ratio) the sandboxkit/docker-py ratio must meet, or None when only reported
    target: tuple[str, float] | None = None
    contenders: tuple[str, ...] = ("sandboxkit", BASELINE, PEER)
    #: whose median is ``sandboxkit=``, and whose is ``baseline=``
    subject: str = "sandboxkit"
    baseline: str = BASELINE
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    #: contender -> the failures of its samples (a failed sample is left out, and reported)
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Context:
    run_id: str
    data_1m: bytes
    data_100m: bytes
    host_1m: Path
    host_100m: Path
    pool: Any = None
    live: dict[str, list[float]] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------ the figures
def _sk(client: clients.Client) -> clients.Sandboxkit:
    assert isinstance(client, clients.Sandboxkit)
    return client


def _exec_docker(client: clients.Client, ctx: Context) -> float:
    return _sk(client).exec_true_docker_exec() if client.name == "sandboxkit" else client.exec_true()


def _live_50(client: clients.Client, ctx: Context) -> float:
    """Create 50 at once in a fresh process; its RSS with them alive feeds memory_50_live."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", client.name, "--run-id", ctx.run_id, "--sandboxes", "50"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ctx.live.setdefault(client.name, []).append(result["rss_mib"])
    return float(result["create_s"])


def _memory(client: clients.Client, ctx: Context) -> float:
    """Reads what the same round's create_50_concurrent child measured (seconds-free figure)."""
    return ctx.live[client.name][-1]


def _cycle(client: clients.Client, ctx: Context) -> float:
    return client.full_cycle(ctx.data_1m, ctx.host_1m)


def _create(client: clients.Client, ctx: Context) -> float:
    return client.create_start()


def _exec(client: clients.Client, ctx: Context) -> float:
    return client.exec_true()


def _create_100(client: clients.Client, ctx: Context) -> float:
    return client.create_concurrent(100)


def _pool_acquire(client: clients.Client, ctx: Context) -> float:
    if client.name != "sandboxkit":
        return client.exec_true()  # the baseline: one raw docker-py exec
    pool = ctx.pool
    while pool.ready < pool.size:  # a full pool, as a warm pool is between bursts
        time.sleep(0.02)
    start = time.perf_counter()
    sandbox = pool.acquire()
    seconds = time.perf_counter() - start
    pool.release(sandbox)
    return seconds


def figures() -> list[Figure]:
    return [
        Figure(
            "create_start",
            "create and start one sandbox",
            lambda c, x: c.create_start(),
            rounds=(15, 2),
            target=("<=", 1.15),
        ),
        Figure(
            "create_start_warden",
            "create and start one sandbox (baseline: the same with the warden off)",
            lambda c, x: c.create_start(),
            rounds=(15, 2),
            target=("<=", 1.05),
            contenders=("sandboxkit", "sandboxkit-nowarden"),
            baseline="sandboxkit-nowarden",
        ),
        Figure(
            "exec_true",
            "execute `true` on a warm sandbox (fast exec path)",
            lambda c, x: c.exec_true(),
            inner=5,
            target=("<=", 0.25),
        ),
        Figure(
            "exec_true_docker_exec",
            "execute `true` with the fast path off (plain docker exec)",
            _exec_docker,
            inner=5,
            target=("<=", 1.10),
            contenders=("sandboxkit", BASELINE),
        ),
        Figure(
            "full_cycle",
            "create, execute, write 1 MiB, read it back, close",
            lambda c, x: c.full_cycle(x.data_1m, x.host_1m),
            rounds=(15, 2),
        ),
        Figure(
            "upload_1mib",
            "write a 1 MiB file",
            lambda c, x: c.upload(x.data_1m, x.host_1m),
            inner=3,
            target=("<=", 1.25),
        ),
        Figure("download_1mib", "read a 1 MiB file", lambda c, x: c.download(MIB), inner=3, target=("<=", 1.25)),
        Figure(
            "upload_100mib", "write a 100 MiB file", lambda c, x: c.upload(x.data_100m, x.host_100m), rounds=(15, 1)
        ),
        Figure("download_100mib", "read a 100 MiB file", lambda c, x: c.download(100 * MIB), rounds=(15, 1)),
        Figure(
            "stream_100mib",
            "stream 100 MiB of command output",
            lambda c, x: c.stream(),
            rounds=(15, 1),
            target=("<", 2.0),
        ),
        Figure(
            "create_10_concurrent",
            "create 10 sandboxes at once (wall time)",
            lambda c, x: c.create_concurrent(10),
            rounds=(15, 1),
        ),
        Figure(
            "create_50_concurrent",
            "create 50 sandboxes at once (wall time, fresh process)",
            _live_50,
            rounds=(15, 1),
            target=("<=", 1.2),
        ),
        Figure(
            "memory_50_live",
            "client RSS with 50 live sandboxes, one command run in each",
            _memory,
            unit="MiB",
            rounds=(15, 1),
        ),
        *(
            Figure(
                f"modal_{name}",
                f"{what}: provider modal through the emulator (baseline: provider docker)",
                run,
                rounds=(15, 1),
                contenders=("sandboxkit-modal", "sandboxkit"),
                subject="sandboxkit-modal",
                baseline="sandboxkit",
            )
            for name, what, run in (
                ("create_start", "create and start one sandbox", lambda c, x: c.create_start()),
                ("exec_true", "execute `true` on a warm sandbox", lambda c, x: c.exec_true()),
                ("full_cycle", "create, execute, write 1 MiB, read it back, close", _cycle),
            )
        ),
        *(
            Figure(
                f"hardening_{name}",
                f"{what}: hardened defaults (baseline: the same provider without them, runc)",
                run,
                rounds=(15, 2),
                inner=inner,
                target=("<=", 1.05),
                contenders=("sandboxkit", "sandboxkit-unhardened"),
                baseline="sandboxkit-unhardened",
            )
            for name, what, run, inner in (
                ("create_start", "create and start one sandbox", lambda c, x: c.create_start(), 1),
                ("exec_true", "execute `true` on a warm sandbox", lambda c, x: c.exec_true(), 5),
            )
        ),
        *(
            Figure(
                f"runsc_{name}",
                f"{what}: runtime runsc, gVisor (baseline: runc)",
                run,
                rounds=(15, 2),
                inner=inner,
                contenders=("sandboxkit-runsc", "sandboxkit"),
                subject="sandboxkit-runsc",
                baseline="sandboxkit",
            )
            for name, what, run, inner in (
                ("create_start", "create and start one sandbox", lambda c, x: c.create_start(), 1),
                ("exec_true", "execute `true` on a warm sandbox", lambda c, x: c.exec_true(), 5),
            )
        ),
        Figure(
            "spawn_first_output",
            "spawn `echo hi` and read its first output (baseline: sandboxkit's execute)",
            lambda c, x: _sk(c).spawn_first_output(),
            inner=3,
            contenders=("sandboxkit", "sandboxkit-execute"),
            baseline="sandboxkit-execute",
        ),
        Figure(
            "snapshot_restore",
            "snapshot a sandbox, start one from it, run a command in it (baseline: commit + create + exec)",
            lambda c, x: c.snapshot_restore(),
            rounds=(15, 2),
            target=("<=", 1.1),
            contenders=("sandboxkit", BASELINE),
        ),
        Figure(
            "url_first_byte",
            "start a web server in a sandbox with a published port; its first byte at the URL",
            lambda c, x: c.url_first_byte(),
            rounds=(15, 2),
            contenders=("sandboxkit", BASELINE),
        ),
        *(
            Figure(
                f"net_{name}",
                f"{what}, to an allowed pass-through domain through the egress (baseline: no network policy)",
                run,
                rounds=rounds,
                target=("<=", 1.2),
                contenders=(network.NAME, "sandboxkit"),
                subject=network.NAME,
                baseline="sandboxkit",
            )
            for name, what, run, rounds in (
                ("https_request", "one HTTPS request on a new connection", lambda c, x: network.https(c), (15, 3)),
                ("download_100mib", "download 100 MiB over HTTPS", lambda c, x: network.download(c), (15, 1)),
            )
        ),
        Figure(
            "net_set_network",
            "sb.set_network(...) until the new policy is in force (baseline: one bare `docker exec true` "
            "into the same egress)",
            lambda c, x: network.set_network(c),
            rounds=(15, 3),
            inner=3,
            target=("<=", 2.0),
            contenders=(network.NAME, "sandboxkit"),
            subject=network.NAME,
            baseline="sandboxkit",
        ),
        *(
            Figure(
                f"bwrap_{name}",
                f"{what}: provider bwrap (baseline: provider docker)",
                run,
                rounds=rounds,
                inner=inner,
                target=target,
                contenders=("sandboxkit-bwrap", "sandboxkit"),
                subject="sandboxkit-bwrap",
                baseline="sandboxkit",
            )
            for name, what, run, target, rounds, inner in (
                ("create_start", "create and start one sandbox", _create, ("<=", 0.1), (15, 2), 1),
                ("exec_true", "execute `true` (docker: its fast exec path)", _exec, ("<=", 1.0), (15, 2), 5),
                ("full_cycle", "create, execute, write 1 MiB, read it back, close", _cycle, ("<=", 0.1), (15, 2), 1),
                ("create_100_concurrent", "create 100 sandboxes at once", _create_100, ("<=", 0.1), (5, 1), 1),
            )
        ),
        Figure(
            "pool_acquire",
            "acquire from a warm Pool (baseline: one raw docker-py exec)",
            _pool_acquire,
            inner=3,
            target=("<=", 1.0),
            contenders=("sandboxkit", BASELINE),
        ),
    ]


# ------------------------------------------------------------------------------------ the run
def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / (1 << 20), 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        import docker

        version = docker.from_env().version()
        info["docker_engine"] = version.get("Version")
        info["docker_py"] = docker.__version__
        info["cgroup"] = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    except Exception as exc:
        info["docker_engine"] = f"unavailable: {exc}"
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("sandboxkit", "sandboxkit-docker", "llm-sandbox"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            info[dist] = None
    return info


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median_ms(values: list[float], unit: str) -> float:
    value = statistics.median(values)
    return value * 1000 if unit == "ms" else value


def _met(ratio: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return ratio < bound if op == "<" else ratio <= bound


def precompile() -> None:
    """Byte-compile sandboxkit's packages, as pip does for the peer and the floor at install time.

    An editable install run with PYTHONDONTWRITEBYTECODE compiles every module at each import,
    which leaves ~2 MiB more resident memory in the live-sandbox figures than a wheel would.
    """
    import compileall
    import importlib.util

    for package in ("sandboxkit", "sandboxkit_docker", "sandboxkit_modal", "sandboxkit_bwrap"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                compileall.compile_dir(location, quiet=1)


def sweep(run_id: str) -> None:
    """Remove every container this run labelled, and nothing else."""
    try:
        import docker

        client = docker.from_env()
        for row in client.api.containers(all=True, filters={"label": f"{clients.RUN_LABEL_KEY}={run_id}"}):
            try:
                client.api.remove_container(row["Id"], force=True)
            except Exception:
                pass
        # snapshot images: docker-py's keep the container's labels, sandboxkit's carry the run's as theirs
        for label in (f"{clients.RUN_LABEL_KEY}={run_id}", f"sandboxkit.snapshot.label.bench={run_id}"):
            for image in client.api.images(filters={"label": label}):
                for ref in image.get("RepoTags") or [image["Id"]]:
                    try:
                        client.api.remove_image(ref, force=True)
                    except Exception:
                        pass
    except Exception as exc:
        _log(f"sweep failed: {exc}")


def run(quick: bool, json_path: Path | None, seed: int | None, only: tuple[str, ...] | None = None) -> int:
    run_id = uuid.uuid4().hex[:10]
    rng = random.Random(seed)
    info = machine()
    _log(f"run {run_id}: {'quick' if quick else 'full'}, {info.get('cpus')} cpus, load {info['loadavg_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="sbk-bench-"))
    data_1m, data_100m = os.urandom(MIB), os.urandom(100 * MIB)
    (tmp / "f1m.bin").write_bytes(data_1m)
    (tmp / "f100m.bin").write_bytes(data_100m)
    ctx = Context(run_id, data_1m, data_100m, tmp / "f1m.bin", tmp / "f100m.bin")
    precompile()
    skipped: dict[str, str] = {}
    contenders: dict[str, clients.Client] = {}
    figs = [f for f in figures() if only is None or any(f.name.startswith(p) for p in only)]
    started = time.perf_counter()
    try:
        needed = {name for fig in figs for name in fig.contenders}
        every = ("sandboxkit", "sandboxkit-nowarden", BASELINE, PEER, "sandboxkit-modal", "sandboxkit-execute")
        others = ("sandboxkit-unhardened", "sandboxkit-runsc", network.NAME, "sandboxkit-bwrap")
        groups = {
            PEER: f"*.vs_{PEER}",
            network.NAME: "net_*",
            "sandboxkit-runsc": "runsc_*",
            "sandboxkit-bwrap": "bwrap_*",
        }
        for name in [n for n in (*every, *others) if n in needed]:
            group = groups.get(name, "modal_*")
            try:
                contenders[name] = network.make(run_id) if name == network.NAME else clients.make(name, run_id)
            except ImportError as exc:
                hint = WHY_MISSING.get(name, "")
                skipped[group] = f"{name} is not installed ({exc}){hint}"
                _log(f"skipping {name}: {exc}")
            except RuntimeError as exc:  # the Modal emulator did not start, the engine has no runsc, or no bwrap here
                skipped[group] = f"{name}: {exc}"
                _log(f"skipping {name}: {exc}")
        for client in contenders.values():
            client.setup()
        import sandboxkit

        if any(f.name == "pool_acquire" for f in figs):
            ctx.pool = sandboxkit.Pool(provider="docker", image=clients.IMAGE, timeout=clients.LIFETIME, size=2).start()
        for client in contenders.values():  # warm-up, not measured
            client.exec_true()
            client.upload(data_1m, ctx.host_1m)
            client.download(MIB)
        most = max(f.rounds[1 if quick else 0] for f in figs)
        for round_no in range(most):
            _log(f"round {round_no + 1}/{most} ({time.perf_counter() - started:.0f}s)")
            for fig in figs:
                if round_no >= fig.rounds[1 if quick else 0]:
                    continue
                order = [c for c in fig.contenders if c in contenders and len(fig.errors.get(c, ())) < MAX_FAILURES]
                rng.shuffle(order)
                for name in order:
                    for _ in range(fig.inner):
                        try:
                            fig.samples.setdefault(name, []).append(fig.run(contenders[name], ctx))
                        except Exception as exc:
                            detail = getattr(exc, "stderr", None) or ""
                            fig.errors.setdefault(name, []).append(f"{type(exc).__name__}: {exc} {detail[-500:]}")
                            _log(f"{fig.name}: {name} failed: {fig.errors[name][-1]}")
    finally:
        if ctx.pool is not None:
            ctx.pool.close()
        for client in contenders.values():
            try:
                client.teardown()
            except Exception as exc:
                _log(f"teardown of {client.name} failed: {exc}")
        sweep(run_id)
    info["loadavg_end"] = list(os.getloadavg())
    info["seconds"] = round(time.perf_counter() - started, 1)
    return report(figs, skipped, info, quick, json_path)


def report(figs: list[Figure], skipped: dict[str, str], info: dict[str, Any], quick: bool, path: Path | None) -> int:
    rows: list[dict[str, Any]] = []
    for fig in figs:
        ours = fig.samples.get(fig.subject)
        if not ours:
            continue
        for other in (fig.baseline, PEER):
            theirs = fig.samples.get(other)
            name = fig.name if other == fig.baseline else f"{fig.name}.vs_{other}"
            if other not in fig.contenders:
                continue
            if not theirs:
                if other in fig.errors:
                    skipped[name] = f"{other} failed: {fig.errors[other][-1]}"
                continue
            mine, base = _median_ms(ours, fig.unit), _median_ms(theirs, fig.unit)
            ratio = mine / base if base else float("inf")
            target = fig.target if other == fig.baseline else ("<", 1.0)
            rows.append(
                {
                    "name": name,
                    "what": fig.what,
                    "unit": fig.unit,
                    "sandboxkit": round(mine, 3),
                    "baseline": round(base, 3),
                    "baseline_name": other,
                    "ratio": round(ratio, 3),
                    "target": None if target is None else f"{target[0]}{target[1]}",
                    "met": None if target is None else _met(ratio, target),
                    "subject": fig.subject,
                    "n": {fig.subject: len(ours), other: len(theirs)},
                    "failed": {k: len(v) for k, v in fig.errors.items() if k in (fig.subject, other)},
                }
            )
    for row in rows:
        print(
            f"{row['name']} sandboxkit={row['sandboxkit']:.2f} baseline={row['baseline']:.2f} ratio={row['ratio']:.3f}"
        )
    for name, why in skipped.items():
        print(f"# skipped {name}: {why}")
    for row in rows:
        if row["target"] is not None:
            verdict = "met" if row["met"] else "MISSED"
            print(f"# target {row['name']}: ratio {row['ratio']:.3f} {row['target']} {verdict}")
    failures = {f"{fig.name}/{who}": errs for fig in figs for who, errs in fig.errors.items()}
    for where, errs in failures.items():
        print(f"# failed {where}: {len(errs)} sample(s), last: {errs[-1]}")
    print(f"# machine: {json.dumps(info, sort_keys=True)}")
    if path is not None:
        document = {
            "mode": "quick" if quick else "full",
            "machine": info,
            "figures": rows,
            "skipped": skipped,
            "failures": failures,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
    ours_failed = any(who in (fig.subject, fig.baseline) for fig in figs for who in fig.errors)
    return 1 if ours_failed else 0  # a failing sandboxkit (or floor) sample is a bug to look at


def markdown(document: dict[str, Any]) -> str:
    """The README table for a ``--json`` document: one row per figure, floor and peer side by side."""
    rows = {row["name"]: row for row in document["figures"]}
    lines = [
        "| figure | unit | sandboxkit | docker-py | ratio | target | llm-sandbox | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if ".vs_" in name:
            continue
        peer = rows.get(f"{name}.vs_{PEER}")
        verdict = "" if row["target"] is None else f"{row['target']} {'met' if row['met'] else '**missed**'}"
        cells = [
            f"`{name}`",
            row["unit"],
            f"{row['sandboxkit']:.1f}",
            f"{row['baseline']:.1f}"
            + {"docker-py": "", "sandboxkit": " (provider docker)"}.get(
                row["baseline_name"], f" ({row['baseline_name']})"
            ),
            f"{row['ratio']:.2f}",
            verdict,
            "" if peer is None else f"{peer['baseline']:.1f}",
            "" if peer is None else f"{peer['ratio']:.2f}" + ("" if peer["met"] else " **behind**"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    info = document["machine"]
    lines.append("")
    lines.append(
        f"{document['mode']} run, {info.get('cpus')} CPUs ({info.get('cpu')}), {info.get('memory_gib')} GiB, "
        f"{info.get('platform')}, Docker {info.get('docker_engine')} (cgroup {info.get('cgroup')}), "
        f"Python {info.get('python')}, docker-py {info.get('docker_py')}, llm-sandbox {info.get('llm-sandbox')}; "
        f"load average {info['loadavg_start'][0]:.1f} at the start, {info['loadavg_end'][0]:.1f} at the end; "
        f"{info.get('seconds')} s."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: under 2 minutes")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--seed", type=int, help="seed for the order inside each round")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated figure names or prefixes to run, e.g. net_,exec_true (default: all)",
    )
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the README table of a --json file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--sandboxes", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())), end="")
        return 0
    if args.child:
        print(json.dumps(clients.live(args.child, args.run_id, args.sandboxes)))
        return 0
    only = None if not args.only else tuple(args.only.split(","))
    return run(args.quick, args.json, args.seed, only)


if __name__ == "__main__":
    sys.exit(main())
