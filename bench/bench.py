#!/usr/bin/env python3
"""Block-device benchmark: our VDUSE daemon versus qemu-storage-daemon's vduse-blk export.

Runs where VDUSE is available (inside the VM of test/vm/run.sh; scripts/bench.sh arranges that):

    python3 bench/bench.py --root PROJECT_ROOT --out OUT_DIR --scratch TMPFS_DIR

Both daemons serve the same tmpfs-backed image (prefilled with data) through virtio-vdpa; fio
(libaio, O_DIRECT, time based) runs on the resulting /dev/vdX. Figures per daemon, queue count and
job: IOPS, MiB/s, p50/p99 completion latency, daemon CPU per I/O, daemon RSS. Medians of the
repeats. Writes results.json and results.md into OUT_DIR and prints the table.

Method notes:
- For each queue count both daemons run at once on the same image (qemu-storage-daemon takes OFD
  locks, ours takes none, I/O is sequential so they never overlap), one /dev/vdX each, and every
  job's repeats alternate between them (qemu, ours, ours, qemu, ...): the emulated machine's speed
  drifts by 2-3x over minutes, so only runs close in time compare.
- numjobs = number of queues, each job with the job's iodepth and its own 1/numjobs slice of the
  device: with one submitting thread blk-mq would use only the virtqueue of that thread's CPU, so
  numjobs=1 would leave the second queue idle. QD figures are per fio job.
- CPU per I/O = delta of utime+stime (the daemon and its descendants, /proc/PID/stat) over the
  whole fio run, divided by the delta of completed requests in /sys/block/vdX/stat over the same
  interval (both sampled right before fio starts and right after it exits, so ramp time is in
  both numerator and denominator). Clock-tick resolution (10 ms) is far below the totals.
- RSS: VmRSS of the daemon (and descendants) right after the job; HWM: VmHWM (peak RSS) of the
  daemon (and descendants) so far, i.e. over every job run before on that daemon instance.

Configuration (environment):
  VDUSE_CSI_BENCH_RUNTIME   seconds per fio run (10)       VDUSE_CSI_BENCH_RAMP    ramp seconds (2)
  VDUSE_CSI_BENCH_REPEATS   repeats (3)                    VDUSE_CSI_BENCH_QUEUES  "1 2"
  VDUSE_CSI_BENCH_JOBS      subset of job names (all)      VDUSE_CSI_BENCH_SIZE_MIB image MiB (1024)
  VDUSE_CSI_BENCH_DAEMONS   "qemu ours"                    VDUSE_CSI_BENCH_MEMORY  1/0 memory figure (1)
  VDUSE_CSI_BENCH_MEM_DEVICES devices for the memory figure (16), VDUSE_CSI_BENCH_MEM_SIZE_MIB (64)
  VDUSE_CSI_BENCH_OURS_MAIN  our CLI (default ROOT/dist/bundle/vduse-csi.js)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Our daemon took 85-100 s to be ready in the TCG VM (qemu-storage-daemon: 1-4 s).
READY_TIMEOUT = float(os.environ.get("VDUSE_CSI_BENCH_READY_TIMEOUT", "") or 400)

# name -> fio options (rw, bs, iodepth)
JOBS: dict[str, dict[str, Any]] = {
    "randread-4k-qd1": {"rw": "randread", "bs": "4k", "iodepth": 1},
    "randread-4k-qd32": {"rw": "randread", "bs": "4k", "iodepth": 32},
    "randwrite-4k-qd32": {"rw": "randwrite", "bs": "4k", "iodepth": 32},
    "read-1m-qd8": {"rw": "read", "bs": "1M", "iodepth": 8},
    "write-1m-qd8": {"rw": "write", "bs": "1M", "iodepth": 8},
}
METRICS = [
    # key, header, format
    ("iops", "IOPS", "{:.0f}"),
    ("mib_s", "MiB/s", "{:.1f}"),
    ("p50_us", "p50 us", "{:.0f}"),
    ("p99_us", "p99 us", "{:.0f}"),
    ("cpu_us_per_io", "CPU us/IO", "{:.1f}"),
    ("rss_mib", "RSS MiB", "{:.1f}"),
    ("hwm_mib", "HWM MiB", "{:.1f}"),
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_list(name: str, default: list[str]) -> list[str]:
    v = os.environ.get(name, "").strip()
    return v.replace(",", " ").split() if v else default


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# /proc sampling


def descendants(pid: int) -> list[int]:
    """pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(")") + 2 :].split()
        p = int(st.split("/")[2])
        children.setdefault(int(rest[1]), []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(")") + 2 :].split()
        total += int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem in KiB, plus Pss from smaps_rollup."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def mem_sum(pids: list[int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in pids:
        for k, v in proc_status(p).items():
            total[k] = total.get(k, 0) + v
    return total


def block_ios(dev: str) -> int:
    """Completed read + write requests of /dev/<dev>."""
    with open(f"/sys/block/{os.path.basename(dev)}/stat") as f:
        s = f.read().split()
    return int(s[0]) + int(s[4])


# ---------------------------------------------------------------------------------------------
# daemons


class Daemon:
    kind = "?"

    def __init__(self, name: str, image: str, queues: int, logdir: str) -> None:
        self.name, self.image, self.queues = name, image, queues
        self.logpath = os.path.join(logdir, f"daemon-{name}.log")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.dev = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def all_devs(self) -> list[str]:
        return [self.dev]

    def launch(self) -> None:
        """Starts the process without waiting for the device."""
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def start(self, timeout: Optional[float] = None) -> None:
        self.launch()
        self.wait_ready(READY_TIMEOUT if timeout is None else timeout)

    def stop(self) -> None:
        raise NotImplementedError

    def _terminate(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: did not exit {timeout:.0f}s after SIGTERM; killing")
            self.proc.kill()
            self.proc.wait(10)


def vdpa_block_dev(name: str) -> str:
    hits = glob.glob(f"/sys/bus/vdpa/devices/{name}/virtio*/block/*")
    if hits and os.path.exists(f"/dev/{os.path.basename(hits[0])}"):
        return f"/dev/{os.path.basename(hits[0])}"
    return ""


def vdpa_del(name: str) -> None:
    if os.path.exists(f"/sys/bus/vdpa/devices/{name}"):
        r = run(["vdpa", "dev", "del", name])
        if r.returncode != 0:
            log(f"vdpa dev del {name}: {r.stderr.strip()}")


class QemuDaemon(Daemon):
    kind = "qemu"

    def launch(self) -> None:
        cmd = [
            "qemu-storage-daemon",
            "--blockdev", f"file,node-name=f,filename={self.image},cache.direct=off",
            "--export", f"vduse-blk,id=e,node-name=f,name={self.name},num-queues={self.queues},writable=on",
        ]  # fmt: skip
        with open(self.logpath, "ab") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        wait_for(lambda: os.path.exists(f"/dev/vduse/{self.name}") or not self.alive(), timeout, f"/dev/vduse/{self.name}")
        if not self.alive():
            raise RuntimeError(f"qemu-storage-daemon exited {self.proc.returncode}; see {self.logpath}")
        r = run(["vdpa", "dev", "add", "name", self.name, "mgmtdev", "vduse"])
        if r.returncode != 0:
            raise RuntimeError(f"vdpa dev add {self.name}: {r.stderr.strip()}")
        self.dev = wait_for(lambda: vdpa_block_dev(self.name), 60, f"block device of vdpa {self.name}")

    def stop(self) -> None:
        vdpa_del(self.name)
        self._terminate()


class OursDaemon(Daemon):
    """`node dist/bundle/vduse-csi.js blk serve --file IMG --name NAME --queues N`: prints a JSON line
    {"name","path"} when ready, serves until SIGTERM, then removes its device.
    With several (image, name) pairs it passes repeated --file/--name options to one process."""

    kind = "ours"
    main_js = ""

    def __init__(self, name: str, image: str, queues: int, logdir: str, extra: Optional[list[tuple[str, str]]] = None) -> None:
        super().__init__(name, image, queues, logdir)
        self.pairs = [(image, name)] + (extra or [])
        self.devs: dict[str, str] = {}

    def launch(self) -> None:
        cmd = ["node", self.main_js, "blk", "serve"]
        for img, name in self.pairs:
            cmd += ["--file", img, "--name", name]
        cmd += ["--queues", str(self.queues)]
        lf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=lf)
        lf.close()
        self.lines: list[str] = []
        self.cond = threading.Condition()
        proc, lines, cond = self.proc, self.lines, self.cond

        def drain() -> None:  # keeps reading stdout so the daemon never blocks on a full pipe
            assert proc.stdout is not None
            with open(self.logpath, "ab") as out:
                for raw in proc.stdout:
                    out.write(b"[stdout] " + raw)
                    out.flush()
                    with cond:
                        lines.append(raw.decode(errors="replace").strip())
                        cond.notify_all()
            with cond:
                cond.notify_all()

        threading.Thread(target=drain, daemon=True).start()

    def wait_ready(self, timeout: float, stall: Optional[float] = None) -> None:
        """Waits for one JSON line per device; with `stall`, gives up when no further device became
        ready for that many seconds after the first one (a CLI that serves only one of them)."""
        proc, lines, cond = self.proc, self.lines, self.cond
        assert proc is not None
        want = {n for _, n in self.pairs}
        deadline = time.monotonic() + timeout
        last_progress, seen = 0.0, 0
        with cond:
            while True:
                for line in lines:
                    if line.startswith("{"):
                        try:
                            j = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(j, dict) and j.get("name") in want and j.get("path"):
                            self.devs[j["name"]] = j["path"]
                if set(self.devs) >= want:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"our daemon exited {proc.returncode} before ready; see {self.logpath}")
                now = time.monotonic()
                if len(self.devs) > seen:
                    seen, last_progress = len(self.devs), now
                if stall is not None and seen and now - last_progress > stall:
                    raise TimeoutError(f"our daemon ready for {seen} of {len(want)} devices, none more for {stall:.0f}s")
                if now >= deadline:
                    raise TimeoutError(f"our daemon ready for {seen} of {len(want)} devices after {timeout:.0f}s")
                cond.wait(min(deadline - now, 1.0))
        for path in self.devs.values():
            wait_for(lambda p=path: os.path.exists(p), 30, path)
        self.dev = self.devs[self.name]

    def all_devs(self) -> list[str]:
        return list(self.devs.values())

    def stop(self) -> None:
        self._terminate(60)
        for _, name in self.pairs:  # the daemon removes its devices itself; clean up if it did not
            if os.path.exists(f"/sys/bus/vdpa/devices/{name}"):
                log(f"{name}: vdpa device still present after our daemon stopped; removing")
                vdpa_del(name)


def make_daemon(kind: str, name: str, image: str, queues: int, logdir: str) -> Daemon:
    return (QemuDaemon if kind == "qemu" else OursDaemon)(name, image, queues, logdir)


# ---------------------------------------------------------------------------------------------
# fio


def fio_job(daemon: Daemon, job: str, queues: int, runtime: int, ramp: int, size_bytes: int, outdir: str, tag: str) -> dict[str, Any]:
    spec = JOBS[job]
    slice_bytes = (size_bytes // queues) // MIB * MIB
    jpath = os.path.join(outdir, f"fio-{tag}.json")
    cmd = [
        "fio", f"--name={job}", f"--filename={daemon.dev}", "--ioengine=libaio", "--direct=1",
        f"--rw={spec['rw']}", f"--bs={spec['bs']}", f"--iodepth={spec['iodepth']}",
        f"--numjobs={queues}", f"--size={slice_bytes}", f"--offset_increment={slice_bytes}",
        "--group_reporting", "--time_based", f"--runtime={runtime}", f"--ramp_time={ramp}",
        "--norandommap", "--randrepeat=0", "--output-format=json", f"--output={jpath}",
    ]  # fmt: skip
    pids = daemon.pids()
    c0, io0, t0 = cpu_ticks(pids), block_ios(daemon.dev), time.monotonic()
    errpath = jpath[: -len(".json")] + ".err"
    with open(errpath, "w") as ef:
        fio = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=ef, stderr=ef)
    try:
        rc = fio.wait(runtime + ramp + 120)
    except subprocess.TimeoutExpired:
        # Do not wait forever: fio may sit in D state on a stuck device until the daemon is stopped.
        fio.kill()
        raise RuntimeError(f"fio {job} still running {runtime + ramp + 120}s after start (device stuck?)") from None
    pids = [p for p in set(pids) | set(daemon.pids())]
    c1, io1, t1 = cpu_ticks(pids), block_ios(daemon.dev), time.monotonic()
    if rc != 0:
        with open(errpath) as ef:
            raise RuntimeError(f"fio {job} failed ({rc}): {ef.read().strip()[-500:]}")
    with open(jpath) as f:
        text = f.read()
    j = json.loads(text[text.index("{") :])
    jb = j["jobs"][0]
    d = jb["write"] if spec["rw"] in ("write", "randwrite") else jb["read"]
    pct = d["clat_ns"].get("percentile", {})
    mem = mem_sum(daemon.pids())
    hwm = mem.get("VmHWM", 0)
    ios = io1 - io0
    return {
        "iops": d["iops"],
        "mib_s": d["bw_bytes"] / MIB,
        "p50_us": pct.get("50.000000", 0) / 1000,
        "p99_us": pct.get("99.000000", 0) / 1000,
        "cpu_us_per_io": ((c1 - c0) / CLK_TCK * 1e6 / ios) if ios > 0 else None,
        "rss_mib": mem.get("VmRSS", 0) / 1024,
        "hwm_mib": hwm / 1024,
        "cpu_s": (c1 - c0) / CLK_TCK,
        "device_ios": ios,
        "fio_ios": d["total_ios"],
        "wall_s": t1 - t0,
        "fio_errors": jb.get("error", 0),
    }


# ---------------------------------------------------------------------------------------------
# reporting


def fmt(v: Any, f: str) -> str:
    return "-" if v is None else f.format(v)


def median(vals: list[Any]) -> Any:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def render_table(summary: dict[str, Any], daemons: list[str], md: bool) -> str:
    headers = ["queues", "job", "daemon"] + [h for _, h, _ in METRICS]
    rows: list[list[str]] = []
    for key, per in summary.items():
        q, job = key.split("/", 1)
        for dk in daemons:
            if dk in per:
                rows.append([q, job, dk] + [fmt(per[dk].get(m), f) for m, _, f in METRICS])
        if "qemu" in per and "ours" in per:
            ratio = []
            for m, _, _ in METRICS:
                a, b = per["ours"].get(m), per["qemu"].get(m)
                ratio.append(f"{a / b:.2f}" if a is not None and b else "-")
            rows.append([q, job, "ours/qemu"] + ratio)
    if md:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_memory(mem: dict[str, Any], md: bool) -> str:
    if not mem:
        return ""
    lines = []
    for k, v in mem.items():
        if "skipped" in v:
            lines.append(f"{k}: skipped: {v['skipped']}")
        else:
            lines.append(
                f"{k}: {v['processes']} process(es), {v['devices']} devices: total VmRSS {v['rss_mib']:.1f} MiB, "
                f"total Pss {v['pss_mib']:.1f} MiB, total VmHWM {v['hwm_mib']:.1f} MiB"
            )
    ratio = ""
    if "qemu-16-processes" in mem and "skipped" not in mem["qemu-16-processes"]:
        q = mem["qemu-16-processes"]
        for k, v in mem.items():
            if k.startswith("ours") and "skipped" not in v:
                ratio += f"\n{k} / qemu-16-processes: RSS {v['rss_mib'] / q['rss_mib']:.2f}, Pss {v['pss_mib'] / q['pss_mib']:.2f}"
    text = "\n".join(lines) + ratio
    return "\n".join("- " + ln for ln in text.splitlines()) if md else text


# ---------------------------------------------------------------------------------------------


def prefill(path: str, size: int) -> None:
    chunk = os.urandom(16 * MIB)
    with open(path, "wb") as f:
        for off in range(0, size, len(chunk)):
            f.write(chunk[: min(len(chunk), size - off)])


def memory_figure(daemon_kinds: list[str], scratch: str, outdir: str, ndev: int, size_mib: int) -> dict[str, Any]:
    imgs = []
    for i in range(ndev):
        p = os.path.join(scratch, f"mem{i}.img")
        with open(p, "wb") as f:
            f.truncate(size_mib * MIB)
        imgs.append(p)
    res: dict[str, Any] = {}

    def touch(devs: list[str]) -> None:
        for dev in devs:  # a little real I/O so every data path has been exercised
            run(["dd", f"if={dev}", "of=/dev/null", "bs=64k", "count=64", "iflag=direct"])
            run(["dd", "if=/dev/zero", f"of={dev}", "bs=64k", "count=16", "oflag=direct", "conv=notrunc"])

    def measure(label: str, procs: list[Daemon], devs: list[str]) -> None:
        touch(devs)
        time.sleep(1)
        pids = [p for d in procs for p in d.pids()]
        m = mem_sum(pids)
        hwm = m.get("VmHWM", 0)
        res[label] = {
            "processes": len(procs),
            "devices": len(devs),
            "rss_mib": m.get("VmRSS", 0) / 1024,
            "pss_mib": m.get("Pss", 0) / 1024,
            "hwm_mib": hwm / 1024,
            "rss_anon_mib": m.get("RssAnon", 0) / 1024,
        }
        log(f"memory {label}: {res[label]}")

    def group(label: str, ds: list[Daemon], **wait_kw: Any) -> None:
        try:
            for d in ds:  # launched together: our daemon's start-up is slow under emulation
                d.launch()
            for d in ds:
                d.wait_ready(READY_TIMEOUT, **wait_kw)
            measure(label, ds, [dev for d in ds for dev in d.all_devs()])
        except Exception as e:  # noqa: BLE001
            res[label] = {"skipped": f"{type(e).__name__}: {e}"}
            log(f"memory {label}: {res[label]['skipped']}")
        finally:
            for d in ds:
                try:
                    d.stop()
                except Exception as e:  # noqa: BLE001
                    log(f"{d.name}: stop failed: {e}")

    if "qemu" in daemon_kinds:
        group(f"qemu-{ndev}-processes", [QemuDaemon(f"memq{i}", img, 1, outdir) for i, img in enumerate(imgs)])
    if "ours" in daemon_kinds:
        # One process serving every device, asked for with repeated --file/--name pairs. A CLI that
        # takes only one pair serves one device: that is reported as skipped after the stall time.
        extra = [(img, f"memo{i}") for i, img in enumerate(imgs)][1:]
        label = f"ours-1-process-{ndev}-devices"
        group(label, [OursDaemon("memo0", imgs[0], 1, outdir, extra)], stall=60)
        if "skipped" in res[label]:
            res[label]["skipped"] = (
                f"our CLI did not serve {ndev} devices from one process given repeated --file/--name pairs "
                f"({res[label]['skipped']})"
            )
    for p in imgs:
        os.unlink(p)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.getcwd(), help="project root (default: cwd)")
    ap.add_argument("--out", default=os.environ.get("VDUSE_CSI_OUT", "."), help="output directory")
    ap.add_argument("--scratch", default=os.environ.get("VDUSE_CSI_SCRATCH", "/tmp"), help="tmpfs directory for images")
    args = ap.parse_args()

    runtime = env_int("VDUSE_CSI_BENCH_RUNTIME", 10)
    ramp = env_int("VDUSE_CSI_BENCH_RAMP", 2)
    repeats = env_int("VDUSE_CSI_BENCH_REPEATS", 3)
    queue_counts = [int(q) for q in env_list("VDUSE_CSI_BENCH_QUEUES", ["1", "2"])]
    jobs = env_list("VDUSE_CSI_BENCH_JOBS", list(JOBS))
    size_mib = env_int("VDUSE_CSI_BENCH_SIZE_MIB", 1024)
    kinds = env_list("VDUSE_CSI_BENCH_DAEMONS", ["qemu", "ours"])
    for j in jobs:
        if j not in JOBS:
            print(f"unknown job {j}; known: {' '.join(JOBS)}", file=sys.stderr)
            return 2

    outdir = args.out
    os.makedirs(outdir, exist_ok=True)
    rawdir = os.path.join(outdir, "raw")
    os.makedirs(rawdir, exist_ok=True)
    notes: list[str] = []

    for tool in ("qemu-storage-daemon", "vdpa", "fio"):
        if run(["sh", "-c", f"command -v {tool}"]).returncode != 0:
            print(f"missing tool: {tool} (run scripts/install-deps.sh)", file=sys.stderr)
            return 1
    if not os.path.exists("/dev/vduse/control"):
        print("/dev/vduse/control missing: run through test/vm/run.sh", file=sys.stderr)
        return 1

    requested = list(kinds)
    OursDaemon.main_js = os.environ.get("VDUSE_CSI_BENCH_OURS_MAIN") or os.path.join(args.root, "dist", "bundle", "vduse-csi.js")
    if "ours" in kinds and not os.path.exists(OursDaemon.main_js):
        msg = f"ours: SKIPPED: {OursDaemon.main_js} does not exist (run `npm run build` once the CLI exists)"
        log(msg)
        notes.append(msg)
        kinds = [k for k in kinds if k != "ours"]
    if not kinds:
        print("no daemon to benchmark", file=sys.stderr)
        return 1

    info = {
        "kernel": platform.release(),
        "qemu_storage_daemon": run(["qemu-storage-daemon", "--version"]).stdout.splitlines()[0],
        "fio": run(["fio", "--version"]).stdout.strip(),
        "node": run(["node", "--version"]).stdout.strip() if "ours" in kinds else None,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime_s": runtime,
        "ramp_s": ramp,
        "repeats": repeats,
        "queues": queue_counts,
        "image_mib": size_mib,
        "numjobs": "= queues (iodepth per job)",
    }
    log(f"config: {json.dumps(info)}")

    image = os.path.join(args.scratch, "bench.img")
    t = time.monotonic()
    prefill(image, size_mib * MIB)
    log(f"prefilled {image} ({size_mib} MiB) in {time.monotonic() - t:.1f}s")

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}  # "q/job" -> kind -> [run results]
    failures: list[str] = []
    for q in queue_counts:
        daemons: dict[str, Daemon] = {}
        try:
            for kind in kinds:
                d = make_daemon(kind, f"{'qsd' if kind == 'qemu' else kind}{q}", image, q, rawdir)
                t = time.monotonic()
                try:
                    d.start()
                except Exception as e:  # noqa: BLE001
                    msg = f"{kind} queues={q}: start FAILED: {type(e).__name__}: {e}"
                    log(msg)
                    failures.append(msg)
                    d.stop()
                    continue
                daemons[kind] = d
                log(f"{kind} queues={q}: {d.name} on {d.dev} (pid {d.pid}, ready in {time.monotonic() - t:.1f}s)")
            for job in jobs:
                for rep in range(1, repeats + 1):
                    order = list(daemons) if rep % 2 == 1 else list(reversed(daemons))
                    for kind in order:
                        d = daemons[kind]
                        if not d.alive():
                            continue
                        try:
                            r = fio_job(d, job, q, runtime, ramp, size_mib * MIB, rawdir, f"{d.name}-{job}-r{rep}")
                        except Exception as e:  # noqa: BLE001
                            msg = f"{kind} queues={q} {job} repeat={rep}: FAILED: {type(e).__name__}: {e}"
                            log(msg)
                            failures.append(msg)
                            continue
                        raw.setdefault(f"{q}/{job}", {}).setdefault(kind, []).append(r)
                        log(
                            f"  {kind:4s} q{q} {job:18s} r{rep} {r['iops']:7.0f} IOPS {r['mib_s']:7.1f} MiB/s "
                            f"p50 {r['p50_us']:7.0f}us p99 {r['p99_us']:8.0f}us "
                            f"cpu/io {fmt(r['cpu_us_per_io'], '{:.1f}')}us rss {r['rss_mib']:.1f}MiB"
                        )
                        if not d.alive():
                            msg = f"{kind} queues={q}: daemon {d.name} died during {job}; see {d.logpath}"
                            log(msg)
                            failures.append(msg)
        finally:
            for d in daemons.values():
                try:
                    d.stop()
                except Exception as e:  # noqa: BLE001
                    failures.append(f"{d.name}: stop failed: {e}")

    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for key, per in raw.items():
        summary[key] = {}
        for kind, runs in per.items():
            summary[key][kind] = {m: median([r[m] for r in runs]) for m, _, _ in METRICS}
            summary[key][kind]["runs"] = len(runs)

    mem: dict[str, Any] = {}

    def write_results(final: bool) -> None:
        result = {"info": info, "notes": notes, "failures": failures, "summary": summary, "memory": mem, "raw": raw}
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump(result, f, indent=2)
        method = (
            f"fio libaio direct=1, {runtime}s + {ramp}s ramp, numjobs = queues (iodepth per job, each job on its own "
            f"slice), both daemons up at once on the same image, medians of {repeats} alternating repeats. CPU us/IO = "
            "daemon utime+stime over the fio run / requests completed by /dev/vdX. RSS = daemon VmRSS after the job; "
            "HWM = VmHWM of the daemon instance so far (jobs run in table order). Software-emulated VM: compare "
            "ratios, not absolute figures."
        )
        md = [f"# vduse-csi block benchmark ({info['date']})", "", method, "",
              f"kernel {info['kernel']}, {info['qemu_storage_daemon']}, {info['fio']}, node {info['node']}, {info['cpus']} vCPUs", ""]  # fmt: skip
        md += [f"- {n}" for n in notes + failures]
        md += ["", render_table(summary, ["qemu", "ours"], md=True), "", "## Memory", ""]
        md += [render_memory(mem, md=True) if final else "(not measured yet)", ""]
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write("\n".join(md))

    write_results(final=False)  # the table survives even if the memory figure never finishes
    if env_int("VDUSE_CSI_BENCH_MEMORY", 1):
        mem = memory_figure(kinds, args.scratch, rawdir, env_int("VDUSE_CSI_BENCH_MEM_DEVICES", 16), env_int("VDUSE_CSI_BENCH_MEM_SIZE_MIB", 64))
        if "ours" in requested and "ours" not in kinds:
            mem["ours"] = {"skipped": f"{OursDaemon.main_js} does not exist"}
    try:
        os.unlink(image)
    except OSError:
        pass
    write_results(final=True)

    print("\n" + render_table(summary, ["qemu", "ours"], md=False) + "\n", flush=True)
    print(render_memory(mem, md=False) + "\n", flush=True)
    for n in notes + failures:
        print(n, flush=True)
    log(f"results: {os.path.join(outdir, 'results.json')} and results.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
