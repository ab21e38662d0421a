"""Placement and memory benchmarks (issue 5, item 6), run by bench/run.

compute    job=compute under kiln (default placement: inside kiln's cpuset) against the same
           kernel on the host: guest rate / host rate (target >= 0.98).
neighbour  job=compute beside a busy neighbour pinned to host CPU 0 (another tenant's
           allocation): kiln with its vCPU pinned to CPU 1 against kiln unpinned
           (allowed on every CPU): rates, and the vCPU's run-queue wait from
           --stats-json (the congestion figure).
ksm        four VMs fill 64 MiB each with the same pattern and hold it (merge=on):
           memory KSM saves (pages_sharing / duplicate pages, target >= 80 %), then a
           fifth VM's job=compute with ksmd scanning against ksmd stopped: the
           slowdown scanning causes (the seeds measured about 1 %).
memwalk    job=memwalk (a dependent walk through one link per 4 KiB page): guest RAM
           backed by 4 KiB pages, THP, hugetlb pages; QEMU -M microvm beside them.

Every comparison interleaves its contenders run by run and reports medians and
ratios. Host settings the benchmark changes (KSM, the huge page pool) are restored.
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from module import ModuleBench

RATE_RE = re.compile(r"compute: iterations=(\d+) seconds=([0-9.]+) rate=(\d+) per_second")
WALK_RE = re.compile(r"memwalk: steps=(\d+) seconds=([0-9.]+) rate=(\d+) per_second ns_per_step=([0-9.]+)")
KSM = Path("/sys/kernel/mm/ksm")
NR_HUGE = Path("/proc/sys/vm/nr_hugepages")


class Saved:
    """Restores sysfs/procfs values on exit."""

    def __init__(self, *paths):
        self.values = {Path(p): Path(p).read_text().strip() for p in paths if Path(p).exists()}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p, v in self.values.items():
            try:
                p.write_text(v + "\n")
            except OSError:
                pass


def write(path, value):
    Path(path).write_text(f"{value}\n")


def read_int(path):
    return int(Path(path).read_text().split()[0])


class Bench(ModuleBench):
    # -- helpers ------------------------------------------------------------------
    def kiln(self, cmdline, *extra, memory="512M"):
        return [str(self.arts["kiln"]), "run", "--kernel", str(self.arts["elf"]), "--memory", memory,
                "--cmdline", cmdline, *extra]

    def qemu_argv(self, cmdline, memory="512M"):
        common = list(self.qemu_common)
        common[common.index("-m") + 1] = memory
        return [self.qemu, "-M", self.qemu_machine, *common, "-serial", "stdio",
                "-kernel", str(self.arts["elf"]), "-append", cmdline]

    def run(self, c, regex):
        """One run of contender c; returns the regex match or None (failure recorded)."""
        r = self.t.run_once(c["argv"], self.seconds * 6 + 60, capture_stdout=True)
        m = regex.search(r["stdout"])
        if r["exit"] != c.get("expect", 0) or r["timed_out"] or not m:
            why = (self.t.describe_failure(r, c.get("expect", 0)) if r["exit"] != c.get("expect", 0) or r["timed_out"]
                   else "no result line: " + self.t.tail(r["stdout"], 3).replace("\n", " | "))
            c["failures"].append(why)
            self.failed = True
            return None
        return m

    def interleaved(self, contenders, regex, on_result):
        for c in contenders:
            c.setdefault("failures", [])
        for i in range(self.runs):
            k = i % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                m = self.run(c, regex)
                if m:
                    on_result(c, m)

    def verdict(self, label, value, target, higher_is_better=True, unit="x"):
        ok = value is not None and (value >= target if higher_is_better else value <= target)
        cmp = ">=" if higher_is_better else "<="
        self.t.log(f"  target {label:46}: {self.t.fmt(value, '.3f')}{unit}  {'PASS' if ok else 'MISS'} ({cmp} {target}{unit})")
        return ok

    # -- compute: guest / host ----------------------------------------------------------
    def compute(self):
        s = self.seconds
        cs = [{"name": "host", "label": "host (testguest-compute-host)",
               "argv": [str(self.arts["compute_host"]), str(s)]},
              {"name": "kiln", "label": "kiln (default placement)", "argv": self.kiln(f"job=compute seconds={s}")}]
        for c in cs:
            c["rates"] = []
        self.interleaved(cs, RATE_RE, lambda c, m: c["rates"].append(int(m[3])))
        med = {c["name"]: self.t.median(c["rates"]) for c in cs}
        self.t.log(f"Compute: job=compute seconds={s}, medians of {self.runs} interleaved runs")
        for c in cs:
            self.t.log(f"  {c['label']:40} {self.t.fmt(med[c['name']], ',.0f'):>12} it/s")
        rel = self.t.ratio(med["kiln"], med["host"])
        self.report_failures(cs)
        self.verdict("compute: kiln / host", rel, 0.98)
        return {"rates": {c["name"]: c["rates"] for c in cs}, "median": med, "kiln_vs_host": rel}

    # -- neighbour: pinned against unpinned beside a busy process -----------------------------
    def neighbour(self):
        s = self.seconds
        ncpu = len(os.sched_getaffinity(0))
        if ncpu < 2:
            self.t.log("Neighbour: needs two CPUs; skipped")
            return None
        cpus = sorted(os.sched_getaffinity(0))
        busy_cpu, vm_cpu = cpus[0], cpus[1]
        tmp = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
        cs = [{"name": "pinned", "label": f"kiln, vCPU pinned to CPU {vm_cpu}",
               "affinity": f"0={vm_cpu}"},
              {"name": "unpinned", "label": f"kiln, vCPU on any of CPUs {cpus[0]}-{cpus[-1]}",
               "affinity": f"0={cpus[0]}-{cpus[-1]}"}]
        for c in cs:
            c.update(rates=[], wait_ms=[], failures=[])
        # The neighbour: the host compute kernel, pinned to CPU busy_cpu, running
        # throughout (restarted if it ends), as another tenant's job would.
        neighbour = subprocess.Popen(["taskset", "-c", str(busy_cpu), str(self.arts["compute_host"]),
                                      str(10 ** 6)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for i in range(self.runs):
                k = i % len(cs)
                for c in cs[k:] + cs[:k]:
                    stats = tmp / f"{c['name']}.json"
                    c["argv"] = self.kiln(f"job=compute seconds={s}", "--vcpu-affinity", c["affinity"],
                                          "--stats-json", str(stats))
                    m = self.run(c, RATE_RE)
                    if m:
                        c["rates"].append(int(m[3]))
                        j = json.loads(stats.read_text())
                        c["wait_ms"].append(j["vcpus"][0]["wait_ns"] / 1e6)
        finally:
            neighbour.send_signal(signal.SIGKILL)
            neighbour.wait()
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        med = {c["name"]: self.t.median(c["rates"]) for c in cs}
        wait = {c["name"]: self.t.median(c["wait_ms"]) for c in cs}
        self.t.log(f"Neighbour: job=compute seconds={s} beside a busy process pinned to CPU {busy_cpu}, "
                   f"medians of {self.runs}")
        self.t.log(f"  {'contender':40} {'it/s':>12} {'vCPU run-queue wait':>20}")
        for c in cs:
            self.t.log(f"  {c['label']:40} {self.t.fmt(med[c['name']], ',.0f'):>12} "
                       f"{self.t.fmt(wait[c['name']], '.1f'):>17} ms")
        rel = self.t.ratio(med["pinned"], med["unpinned"])
        self.t.log(f"    pinned / unpinned: {self.t.fmt(rel, '.3f')}x")
        self.report_failures(cs)
        return {"busy_cpu": busy_cpu, "vm_cpu": vm_cpu, "rates": {c["name"]: c["rates"] for c in cs},
                "wait_ms": {c["name"]: c["wait_ms"] for c in cs}, "median": med, "median_wait_ms": wait,
                "pinned_vs_unpinned": rel}

    # -- ksm: memory saved by four VMs, and the compute cost of scanning --------------------
    def ksm(self):
        if not (KSM / "run").exists():
            self.t.log("KSM: not in this kernel; skipped")
            return None
        mib, vms = 64, 4
        pages = vms * mib * 256
        s = self.seconds
        holders = []
        with Saved(KSM / "run", KSM / "pages_to_scan", KSM / "sleep_millisecs"):
            write(KSM / "run", 2)  # unmerge everything: a clean start
            write(KSM / "pages_to_scan", 5000)
            write(KSM / "sleep_millisecs", 20)
            write(KSM / "run", 1)
            base_sharing = read_int(KSM / "pages_sharing")
            try:
                hold = s * self.runs * 2 + 120
                for i in range(vms):
                    holders.append(subprocess.Popen(
                        self.kiln(f"job=memfill mib={mib} hold={hold}", "--console", "none", memory="128M,merge=on"),
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                # Merged when two full scans passed without pages_sharing growing.
                t0 = time.monotonic()
                last, still = -1, 0
                while time.monotonic() - t0 < 120 and still < 2:
                    scans = read_int(KSM / "full_scans")
                    while read_int(KSM / "full_scans") == scans and time.monotonic() - t0 < 120:
                        time.sleep(0.1)
                    now = read_int(KSM / "pages_sharing")
                    still = still + 1 if now == last else 0
                    last = now
                merge_seconds = time.monotonic() - t0
                sharing = read_int(KSM / "pages_sharing") - base_sharing
                shared = read_int(KSM / "pages_shared")
                # Every filled page is a duplicate of one page: all but one could go.
                saved = sharing / (pages - 1)
                self.t.log(f"KSM: {vms} VMs x {mib} MiB of identical pages, merge=on "
                           f"(ksmd: 5000 pages per 20 ms)")
                self.t.log(f"  pages_sharing {sharing:,} of {pages - 1:,} duplicate pages "
                           f"({sharing * 4096 / 2**20:.0f} MiB saved), pages_shared {shared}, "
                           f"settled after {merge_seconds:.1f} s")
                self.verdict("KSM: duplicate pages merged", saved, 0.80)

                # The cost of scanning: a fifth VM computes with ksmd scanning the four
                # (and itself) against ksmd stopped (run=0 keeps what is merged).
                cs = [{"name": "ksm_on", "label": "compute, ksmd scanning", "ksm": 1},
                      {"name": "ksm_off", "label": "compute, ksmd stopped", "ksm": 0}]
                for c in cs:
                    c.update(rates=[], failures=[], argv=self.kiln(f"job=compute seconds={s}", memory="128M,merge=on"))
                for i in range(self.runs):
                    k = i % len(cs)
                    for c in cs[k:] + cs[:k]:
                        write(KSM / "run", c["ksm"])
                        m = self.run(c, RATE_RE)
                        if m:
                            c["rates"].append(int(m[3]))
                write(KSM / "run", 1)
                med = {c["name"]: self.t.median(c["rates"]) for c in cs}
                for c in cs:
                    self.t.log(f"  {c['label']:40} {self.t.fmt(med[c['name']], ',.0f'):>12} it/s")
                slow = None
                if med["ksm_on"] and med["ksm_off"]:
                    slow = 1 - med["ksm_on"] / med["ksm_off"]
                self.t.log(f"    slowdown from scanning: {self.t.fmt(slow * 100 if slow is not None else None, '.1f')} %"
                           " (seeds: about 1 %)")
                self.report_failures(cs)
                alive = sum(h.poll() is None for h in holders)
                if alive != vms:
                    self.t.log(f"  ! only {alive} of {vms} holding VMs were still running at the end")
                    self.failed = True
            finally:
                for h in holders:
                    if h.poll() is None:
                        h.send_signal(signal.SIGTERM)
                for h in holders:
                    try:
                        h.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        h.kill()
                        h.wait()
        return {"vms": vms, "mib_each": mib, "duplicate_pages": pages - 1, "pages_sharing": sharing,
                "pages_shared": shared, "saved_fraction": saved, "settle_seconds": merge_seconds,
                "compute_rates": {c["name"]: c["rates"] for c in cs}, "compute_median": med,
                "scan_slowdown": slow}

    # -- memwalk: host page size --------------------------------------------------------------
    def memwalk(self):
        s = self.seconds
        mib = 256
        need_pages = (512 + 4) // 2 + 8  # a 512 MiB guest, rounded up, with slack
        with Saved(NR_HUGE):
            write(NR_HUGE, read_int(NR_HUGE) + need_pages)
            job = f"job=memwalk mib={mib} seconds={s}"
            cs = [{"name": "4k", "label": "kiln, 4 KiB pages (thp=off)", "argv": self.kiln(job, memory="512M,thp=off")},
                  {"name": "thp", "label": "kiln, THP (default)", "argv": self.kiln(job)},
                  {"name": "hugetlb", "label": "kiln, hugetlb 2 MiB (hugepages=on)",
                   "argv": self.kiln(job, memory="512M,hugepages=on")}]
            if self.qemu:
                cs.append({"name": "qemu", "label": "QEMU -M microvm (default)", "argv": self.qemu_argv(job),
                           "expect": 1})
            for c in cs:
                c["ns"] = []
            self.interleaved(cs, WALK_RE, lambda c, m: c["ns"].append(float(m[4])))
        med = {c["name"]: self.t.median(c["ns"]) for c in cs}
        self.t.log(f"Memwalk: job=memwalk mib={mib} seconds={s}, 512 MiB guest, medians of {self.runs}")
        self.t.log(f"  {'contender':40} {'ns/step':>8} {'vs 4 KiB':>9}")
        for c in cs:
            self.t.log(f"  {c['label']:40} {self.t.fmt(med[c['name']], '.1f'):>8} "
                       f"{self.t.fmt(self.t.ratio(med['4k'], med[c['name']]), '.2f'):>8}x")
        self.report_failures(cs)
        return {"ns_per_step": {c["name"]: c["ns"] for c in cs}, "median": med,
                "speedup_vs_4k": {n: self.t.ratio(med["4k"], v) for n, v in med.items()}}


def bench_placement(tools, arts, qemu, qemu_machine, qemu_common, seconds, runs):
    b = Bench(tools, arts, qemu, qemu_machine, qemu_common, seconds, runs)
    out = {}
    for name in ("compute", "neighbour", "ksm", "memwalk"):
        out[name] = getattr(b, name)()
        tools.log()
    return out, b.failed
