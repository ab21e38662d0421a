"""Network benchmark (issue 4, item 5), run by bench/run.

Kiln's virtio-net (`--net tap=TAP`) against QEMU -M microvm with virtio-net-device on
the same kind of TAP (userspace virtio-net: no vhost-net on these machines), the same
test guest and job, runs interleaved, medians. Everything happens inside a network
namespace made for the run (a TAP with 10.99.0.1/24, the guest 10.99.0.2), removed at
the end however the run ends (a namespace left by a killed run is removed by the next).

tx     guest->host UDP: job=net-bench mode=tx at size 1472 (Gbit/s) and 18 (pps, 64-byte
       frames on a wire), counted where the host received them (the TAP's rx counters)
       and by the guest.
rx     host->guest UDP: kiln_bench_udp_blast (sendmmsg, sequence numbers) in the
       namespace against job=net-bench mode=rx seq=1: the guest's rate and its lost count.
       The sender runs flat out (overload: it takes a whole CPU, and most datagrams are
       dropped in the TAP's queue); the targets are judged on these runs.
paced  the same at fixed offered rates (udp_blast's RATE, PACED_RATES, 1472 B): what
       each guest takes and loses when the sender costs only what its rate needs. On a
       machine with few CPUs this shows where the sender, not the VMM, is the limit.
ping   round trip against job=net-echo: ping -c 100 -i 0.01, median of the replies' times.
CPU    host CPU seconds per GB moved: user+sys of the VMM process (rusage, run_once's
       cpu_ms) over the UDP payload bytes the receiving side counted.

Target (issue 4): kiln >= 1.3x QEMU's throughput at no more host CPU per byte.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from module import ModuleBench

NS_PREFIX = "kiln-bench-net-"
TAP = "kbtap0"
HOST_IP, GUEST_IP, PREFIX = "10.99.0.1", "10.99.0.2", 24
GUEST_MAC = "52:54:00:12:34:56"  # both VMMs get it: the namespace's neighbour entry stays right
PORT = 9
SIZES = (1472, 18)
PING_COUNT = 100
PACED_SIZE = 1472
PACED_RATES = (100_000, 200_000, 400_000)
TARGET_THROUGHPUT = 1.3

READY_RE = re.compile(r"net-(?:echo|bench): mac=\S+ ip=\S+ ready")
RATE_RE = re.compile(r"pps=(\d+) gbps=([0-9.]+)")
TX_RE = re.compile(r"net-bench: mode=tx frames=(\d+) bytes=(\d+) frame_bytes=(\d+) size=(\d+) us=(\d+) "
                   r"ring_full=(\d+) unsent=(\d+)")
RX_RE = re.compile(r"net-bench: mode=rx frames=(\d+) bytes=(\d+) us=(\d+) lost=(\d+)")
COUNTERS_RE = re.compile(r"net-(?:echo|bench): rx=\d+ .*\btx=(\d+)")
BLAST_RE = re.compile(r"udp_blast: sent=(\d+) bytes=(\d+) seconds=([0-9.]+) errors=(\d+)")
PING_RE = re.compile(r"\btime=([0-9.]+) ms")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespace:
    """ip netns NAME with the TAP and addresses; deleted on exit, SIGTERM and SIGHUP
    included (turned into SystemExit while it exists)."""

    def __init__(self):
        self.name = f"{NS_PREFIX}{os.getpid()}"
        self.saved = {}

    @staticmethod
    def sweep():
        """Removes namespaces of earlier runs whose bench/run is gone (killed with -9)."""
        r = ip("netns", "list", check=False)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(NS_PREFIX):
                continue
            pid = name[len(NS_PREFIX):]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                ip("-n", name, "link", "del", TAP, check=False)
                ip("netns", "del", name, check=False)

    def __enter__(self):
        def stop(signum, _frame):
            raise SystemExit(128 + signum)
        for s in (signal.SIGTERM, signal.SIGHUP):
            self.saved[s] = signal.signal(s, stop)
        try:
            ip("netns", "add", self.name)
            ip("-n", self.name, "link", "set", "lo", "up")
            ip("-n", self.name, "tuntap", "add", "dev", TAP, "mode", "tap")
            ip("-n", self.name, "addr", "add", f"{HOST_IP}/{PREFIX}", "dev", TAP)
            ip("-n", self.name, "link", "set", TAP, "up")
            # The guest's MAC is fixed, so no ARP before the first datagram or ping.
            ip("-n", self.name, "neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC, "dev", TAP, "nud", "permanent")
            link = json.loads(ip("-n", self.name, "-j", "link", "show", "dev", TAP).stdout)[0]
            self.tap_mac = link["address"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        ip("-n", self.name, "link", "del", TAP, check=False)
        ip("netns", "del", self.name, check=False)
        for s, h in self.saved.items():
            signal.signal(s, h)

    def exec_prefix(self):
        return [shutil.which("ip"), "netns", "exec", self.name]

    def tap_stats(self):
        link = json.loads(ip("-n", self.name, "-j", "-s", "link", "show", "dev", TAP).stdout)[0]
        return link["stats64"]


def kiln_has_net(kiln):
    """True when `kiln run --help` offers --net (issue 4's device is in this binary)."""
    try:
        r = subprocess.run([str(kiln), "run", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"(?m)^\s*--net\s", r.stdout + r.stderr) is not None


class Bench(ModuleBench):
    def __init__(self, tools, arts, qemu, qemu_machine, qemu_common, seconds, runs, ns):
        super().__init__(tools, arts, qemu, qemu_machine, qemu_common, seconds, runs)
        self.ns = ns
        self.timeout = seconds * 4 + 60

    def contenders(self, job):
        c = []
        if self.arts["kiln"] and self.arts["kiln_net"]:
            c.append({"name": "kiln", "label": "kiln --net tap", "expect": 0,
                      "argv": self.ns.exec_prefix() + [
                          str(self.arts["kiln"]), "run", "--kernel", str(self.arts["elf"]), "--memory", "128M",
                          "--cmdline", job, "--net", f"tap={TAP},mac={GUEST_MAC}", "--timeout", str(self.timeout)]})
        if self.qemu:
            c.append({"name": "qemu", "label": "QEMU microvm virtio-net-device", "expect": 1,
                      "argv": self.ns.exec_prefix() + [
                          self.qemu, "-M", self.qemu_machine, *self.qemu_common, "-serial", "stdio",
                          "-global", "virtio-mmio.force-legacy=false",
                          "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
                          "-device", f"virtio-net-device,netdev=n0,mac={GUEST_MAC}",
                          "-kernel", str(self.arts["elf"]), "-append", job]})
        for x in c:
            x.update(samples=[], failures=[])
        return c

    def wait_ready(self, stdout_so_far, running, limit=30):
        end = time.monotonic() + limit
        while time.monotonic() < end and running():
            if READY_RE.search(stdout_so_far()):
                return True
            time.sleep(0.02)
        return False

    def after_ready(self, argv, limit):
        """A run_once `during`: once the guest is ready, argv to completion; its stdout."""
        def during(stdout_so_far, running):
            if not self.wait_ready(stdout_so_far, running):
                return None
            return subprocess.run(argv, capture_output=True, text=True, timeout=limit).stdout
        return during

    def interleaved(self, cs, one_run):
        """one_run(c) -> sample dict, or a string saying why the run failed."""
        for i in range(self.runs):
            k = i % len(cs) if cs else 0
            for c in cs[k:] + cs[:k]:
                got = one_run(c)
                if isinstance(got, str):
                    c["failures"].append(got)
                    self.failed = True
                else:
                    c["samples"].append(got)

    def run_vm(self, c, during=None):
        """Runs contender c; returns (run_once's result, None) or (result, why it failed)."""
        r = self.t.run_once(c["argv"], self.timeout, capture_stdout=True, during=during)
        if r["exit"] != c["expect"] or r["timed_out"]:
            return r, self.t.describe_failure(r, c["expect"]) + " | " + self.t.tail(r["stdout"], 3).replace("\n", " | ")
        return r, None

    def no_line(self, r, what):
        return f"no {what} line: " + self.t.tail(r["stdout"], 3).replace("\n", " | ")

    # -- guest -> host ----------------------------------------------------------------
    def tx(self, size):
        job = (f"job=net-bench mode=tx ip={GUEST_IP} dst={HOST_IP}:{PORT} dstmac={self.ns.tap_mac} "
               f"size={size} seconds={self.seconds}")
        cs = self.contenders(job)

        def one(c):
            before = self.ns.tap_stats()
            r, why = self.run_vm(c)
            after = self.ns.tap_stats()
            if why:
                return why
            m, rate, cnt = TX_RE.search(r["stdout"]), RATE_RE.search(r["stdout"]), COUNTERS_RE.search(r["stdout"])
            if not (m and rate and cnt):
                return self.no_line(r, "net-bench mode=tx")
            frames, us = int(m[1]), int(m[5])
            # Every frame the VMM handed to the TAP; less the guest's others (ARP answers).
            host_frames = after["rx"]["packets"] - before["rx"]["packets"] - (int(cnt[1]) - frames)
            moved = host_frames * size
            return {"guest_pps": int(rate[1]), "guest_gbps": float(rate[2]), "guest_frames": frames, "us": us,
                    "ring_full": int(m[6]), "unsent": int(m[7]),
                    "host_frames": host_frames, "host_pps": host_frames / (us / 1e6),
                    "host_gbps": moved * 8 / (us * 1e3),
                    "host_rx_dropped": after["rx"]["dropped"] - before["rx"]["dropped"],
                    "cpu_ms": r["cpu_ms"], "wall_ms": r["wall_ms"],
                    "cpu_s_per_gb": r["cpu_ms"] / 1e3 / (moved / 1e9) if moved > 0 else None}
        self.interleaved(cs, one)
        return cs

    # -- host -> guest ----------------------------------------------------------------
    def rx(self, size, rate=0):
        """rate: datagrams per second offered; 0 is as fast as the sender can."""
        job = f"job=net-bench mode=rx ip={GUEST_IP} port={PORT} seq=1 seconds={self.seconds} wait=30"
        blast = self.ns.exec_prefix() + [str(self.arts["udp_blast"]), GUEST_IP, str(PORT), str(size),
                                         str(self.seconds + 1), str(rate)]
        cs = self.contenders(job)
        during = self.after_ready(blast, self.seconds + 30)

        def one(c):
            before = self.ns.tap_stats()
            r, why = self.run_vm(c, during)
            after = self.ns.tap_stats()
            if why:
                return why
            m, rate = RX_RE.search(r["stdout"]), RATE_RE.search(r["stdout"])
            b = BLAST_RE.search(r.get("during") or "")
            if not b:
                return "the sender did not run (guest never ready?): " + self.t.tail(r["stdout"], 3).replace("\n", " | ")
            if not (m and rate):
                return self.no_line(r, "net-bench mode=rx")
            moved = int(m[2])
            return {"guest_pps": int(rate[1]), "guest_gbps": float(rate[2]), "guest_frames": int(m[1]),
                    "us": int(m[3]), "lost": int(m[4]), "sent": int(b[1]), "sender_seconds": float(b[3]),
                    "loss_pct": 100 * int(m[4]) / (int(m[1]) + int(m[4])) if int(m[1]) + int(m[4]) else None,
                    "sender_pps": int(b[1]) / float(b[3]),
                    "tap_tx_dropped": after["tx"]["dropped"] - before["tx"]["dropped"],
                    "cpu_ms": r["cpu_ms"], "wall_ms": r["wall_ms"],
                    "cpu_s_per_gb": r["cpu_ms"] / 1e3 / (moved / 1e9) if moved > 0 else None}
        self.interleaved(cs, one)
        return cs

    # -- ping round trip --------------------------------------------------------------
    def ping(self):
        # The guest echoes for 4 s after it is ready; ping's 100 requests take about 1 s.
        job = f"job=net-echo ip={GUEST_IP} seconds=4"
        argv = self.ns.exec_prefix() + ["ping", "-n", "-c", str(PING_COUNT), "-i", "0.01", "-w", "3", GUEST_IP]
        cs = self.contenders(job)
        during = self.after_ready(argv, 30)

        def one(c):
            r, why = self.run_vm(c, during)
            if why:
                return why
            times = [float(x) for x in PING_RE.findall(r.get("during") or "")]
            if not times:
                return "no ping replies: " + self.t.tail(r.get("during") or r["stdout"], 3).replace("\n", " | ")
            times.sort()
            return {"replies": len(times), "median_ms": self.t.median(times), "min_ms": times[0],
                    "p90_ms": times[int(len(times) * 0.9) - 1 if len(times) >= 10 else -1], "max_ms": times[-1],
                    "times_ms": times}
        self.interleaved(cs, one)
        return cs

    # -- report -------------------------------------------------------------------------
    def med(self, c, key):
        return self.t.median([s[key] for s in c["samples"] if s.get(key) is not None])

    def verdict(self, label, value, target, higher_is_better=True):
        cmp = ">=" if higher_is_better else "<="
        if value is None:
            self.t.log(f"  target {label:44}: -  n/a ({cmp} {target}x)")
            return "n/a"
        ok = value >= target if higher_is_better else value <= target
        self.t.log(f"  target {label:44}: {self.t.fmt(value, '.2f')}x  {'PASS' if ok else 'MISS'} ({cmp} {target}x)")
        return "PASS" if ok else "MISS"

    def throughput(self, kind, size, cs):
        """Table rows for one direction and size, and kiln/QEMU ratios."""
        f = self.t.fmt
        out = {"contenders": {}}
        for c in cs:
            m = {k: self.med(c, k) for k in ("guest_pps", "guest_gbps", "host_pps", "host_gbps", "cpu_ms",
                                             "cpu_s_per_gb", "lost", "loss_pct", "sender_pps")}
            out["contenders"][c["name"]] = {"label": c["label"], "median": m, "samples": c["samples"],
                                            "runs_ok": len(c["samples"]), "failures": c["failures"]}
            ok = f"{len(c['samples'])}/{self.runs}"
            if kind == "tx":
                self.t.log(f"  {kind} {size:>4} B  {c['label']:32} {ok:>5} {f(m['host_pps'], ',.0f'):>10} "
                           f"{f(m['host_gbps'], '.3f'):>8} {f(m['guest_pps'], ',.0f'):>10} "
                           f"{f(m['cpu_s_per_gb'], '.2f'):>9}")
            else:
                self.t.log(f"  {kind} {size:>4} B  {c['label']:32} {ok:>5} {f(m['guest_pps'], ',.0f'):>10} "
                           f"{f(m['guest_gbps'], '.3f'):>8} {f(m['sender_pps'], ',.0f'):>10} "
                           f"{f(m['cpu_s_per_gb'], '.2f'):>9}   lost {f(m['lost'], ',.0f')} "
                           f"({f(m['loss_pct'], '.1f')} %)")
        k, q = out["contenders"].get("kiln"), out["contenders"].get("qemu")
        rate_key = "host_pps" if kind == "tx" else "guest_pps"
        out["kiln_vs_qemu"] = self.t.ratio(k["median"][rate_key], q["median"][rate_key]) if k and q else None
        out["cpu_per_byte_kiln_vs_qemu"] = (self.t.ratio(k["median"]["cpu_s_per_gb"], q["median"]["cpu_s_per_gb"])
                                            if k and q else None)
        return out

    def run_all(self):
        log, f = self.t.log, self.t.fmt

        def times(x):
            return "-" if x is None else f"{x:.2f}x"
        results = {"namespace": self.ns.name, "tap": TAP, "host_ip": HOST_IP, "guest_ip": GUEST_IP,
                   "seconds": self.seconds, "runs": self.runs}
        log(f"Network: virtio-net on a TAP in netns {self.ns.name}, {self.seconds} s per run, "
            f"medians of {self.runs} interleaved runs")
        log("  tx: guest -> host (rate as the TAP received it); rx: udp_blast in the namespace -> guest")
        log(f"  {'':10} {'contender':32} {'ok':>5} {'pps':>10} {'Gbit/s':>8} {'guest/snd':>10} {'CPU s/GB':>9}")
        for kind in ("tx", "rx"):
            for size in SIZES:
                cs = getattr(self, kind)(size)
                results[f"{kind}_{size}"] = self.throughput(kind, size, cs)
                r = results[f"{kind}_{size}"]
                log(f"    kiln/QEMU: throughput {times(r['kiln_vs_qemu'])}, "
                    f"CPU per byte {times(r['cpu_per_byte_kiln_vs_qemu'])}")
                self.report_failures(cs)
        log(f"  rx paced at fixed offered rates, {PACED_SIZE} B (a load curve, not a target)")
        for rate in PACED_RATES:
            cs = self.rx(PACED_SIZE, rate)
            results[f"rx_{PACED_SIZE}_paced_{rate}"] = r = self.throughput("rx", PACED_SIZE, cs)
            log(f"    offered {rate:,} pps: kiln/QEMU taken {times(r['kiln_vs_qemu'])}, "
                f"CPU per byte {times(r['cpu_per_byte_kiln_vs_qemu'])}")
            self.report_failures(cs)
        cs = self.ping()
        ping = {"count": PING_COUNT, "contenders": {}}
        log(f"  ping -c {PING_COUNT} -i 0.01 against job=net-echo (ms; medians over runs)")
        for c in cs:
            m = {k: self.med(c, k) for k in ("median_ms", "min_ms", "p90_ms", "max_ms", "replies")}
            ping["contenders"][c["name"]] = {"label": c["label"], "median": m, "samples": c["samples"],
                                             "failures": c["failures"]}
            log(f"  ping       {c['label']:32} {len(c['samples'])}/{self.runs:<3} median {f(m['median_ms'], '.3f')} "
                f"min {f(m['min_ms'], '.3f')} p90 {f(m['p90_ms'], '.3f')} max {f(m['max_ms'], '.3f')} "
                f"replies {f(m['replies'], '.0f')}/{PING_COUNT}")
        k, q = ping["contenders"].get("kiln"), ping["contenders"].get("qemu")
        ping["rtt_kiln_vs_qemu"] = self.t.ratio(k["median"]["median_ms"], q["median"]["median_ms"]) if k and q else None
        log(f"    kiln/QEMU median RTT: {times(ping['rtt_kiln_vs_qemu'])}")
        self.report_failures(cs)
        results["ping"] = ping

        log("  targets (issue 4): >= 1.3x QEMU's throughput at no more host CPU per byte")
        targets = {}
        for kind in ("tx", "rx"):
            for size in SIZES:
                r = results[f"{kind}_{size}"]
                what = f"{kind} {size} B"
                targets[what] = {
                    "throughput": self.verdict(f"{what}: throughput kiln/QEMU", r["kiln_vs_qemu"], TARGET_THROUGHPUT),
                    "cpu_per_byte": self.verdict(f"{what}: CPU per byte kiln/QEMU",
                                                 r["cpu_per_byte_kiln_vs_qemu"], 1.0, higher_is_better=False)}
        results["targets"] = targets
        return results


def bench_net(tools, arts, qemu, qemu_machine, qemu_common, seconds, runs):
    """Returns (results, failed)."""
    log = tools.log
    failed = False
    kiln = arts.get("kiln")
    arts = dict(arts, kiln_net=bool(kiln) and kiln_has_net(kiln))
    if kiln and not arts["kiln_net"]:
        log(f"Network: kiln is not available: `{kiln} run --help` offers no --net (issue 4's device "
            "is not in this binary); QEMU runs alone")
        failed = True
    if not arts.get("udp_blast") or not Path(arts["udp_blast"]).is_file():
        log("Network: bench/kiln_bench_udp_blast is missing: the host->guest runs fail")
    if not shutil.which("ping"):
        log("Network: ping not found (scripts/install-deps installs iputils-ping)")
    if not (arts.get("kiln_net") or qemu):
        log("Network: neither kiln with --net nor QEMU: skipped")
        return {"skipped": "no contender"}, True
    Namespace.sweep()
    try:
        with Namespace() as ns:
            b = Bench(tools, arts, qemu, qemu_machine, qemu_common, seconds, runs, ns)
            results = b.run_all()
            results["kiln_available"] = arts["kiln_net"]
            return results, failed or b.failed
    except subprocess.CalledProcessError as e:
        log(f"Network: setting up the namespace failed ({' '.join(e.cmd)}: {e.stderr.strip()}); "
            "it needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and /dev/net/tun")
        return {"skipped": "namespace"}, True
