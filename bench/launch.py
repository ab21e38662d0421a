"""Launch rate (issue 6, item 5), run by bench/run: how many VMs a host starts and
finishes per second.

For each contender, kiln_bench_launch (bench/launch.c) starts N VMs, at most C at once,
a new one as soon as one is done, where done means all gone: every process the run
started has ended (kiln's deferred KVM teardown included), the same for every
contender. Per batch: wall time from the first start to the last all-gone, VMs/s,
VMs/s per host core (divided by min(C, CPUs this process may use)), CPU time per VM
(user + system of the VM's processes, leftovers included). Peak memory (the largest sum
of RSS of all live contender processes, sampled every --launch-sample-us) comes from a
second batch right after, as waking up every millisecond slows the VMs down. Every
run's exit status is checked; a failed VM is reported and not counted (the rate counts
VMs that ran correctly). The whole N-VM batch is repeated K times, contenders
interleaved (the first rotating each round), and medians are reported, with kiln /
floor and kiln / QEMU and the targets: kiln's rate >= 0.9x the floor's and >= 2x QEMU's.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from module import ModuleBench

TARGET_VS_FLOOR = 0.9
TARGET_VS_QEMU = 2.0
# Startup contenders (bench/run's startup_contenders, so the argv and QEMU flags are the
# very same) that run here, and the pairs judged: kiln row -> (floor row, QEMU row).
NAMES = ("floor", "floor_irqchip", "kiln_trivial", "qemu_trivial", "kiln_pvh", "qemu")
JUDGED = {"kiln_trivial": ("floor", "qemu_trivial"), "kiln_pvh": ("floor", "qemu")}


def failed_run(r, expect):
    return r["status"] < 0 or r["timed_out"] or os.waitstatus_to_exitcode(r["status"]) != expect


def parse(stdout):
    batch, runs = {}, []
    for line in stdout.splitlines():
        kind, _, rest = line.partition(" ")
        fields = {k: int(v) for k, v in (kv.split("=", 1) for kv in rest.split())}
        if kind == "batch":
            batch = fields
        elif kind == "run":
            runs.append(fields)
    return batch, runs


class Bench(ModuleBench):
    def __init__(self, tools, arts, vms, concurrency, runs, timeout, sample_us):
        super().__init__(tools, arts, None, None, None, None, runs)
        self.vms, self.concurrency, self.timeout, self.sample_us = vms, concurrency, timeout, sample_us
        self.cores = min(concurrency, len(os.sched_getaffinity(0)))
        self.load_start = os.getloadavg()[0]

    def batch(self, c, sample_us):
        """One batch of self.vms runs of contender c; returns its figures or None."""
        errdir = tempfile.mkdtemp(prefix="kiln-bench-launch-")
        try:
            argv = [str(self.arts["launch"]), "-n", str(self.vms), "-c", str(self.concurrency),
                    "-e", str(c["expect"]), "-t", str(int(self.timeout)), "-s", str(sample_us),
                    "-d", errdir, "--", *c["argv"]]
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=self.timeout * (self.vms + 1) + 60)
            batch, runs = parse(p.stdout)
            if not batch:
                c["failures"].append(f"kiln_bench_launch: exit {p.returncode}: {self.t.tail(p.stderr, 3)}")
                return None
            bad = [r for r in runs if failed_run(r, c["expect"])]
            if len(runs) != self.vms:
                c["failures"].append(f"kiln_bench_launch reported {len(runs)} of {self.vms} VMs")
                return None
            if bad:  # reported, and not counted: the rate is VMs that ran correctly per second
                self.failed = True
                c["vms_failed"] += len(bad)
                r = bad[0]
                why = ("timed out" if r["timed_out"] else "runner failed" if r["status"] < 0
                       else f"exit {os.waitstatus_to_exitcode(r['status'])}, expected {c['expect']}")
                err = Path(errdir, f"{r['i']}.err")
                text = self.t.tail(err.read_text(errors="replace"), 3) if err.is_file() else ""
                c["failures"].append(f"{len(bad)}/{self.vms} VMs failed; first (VM {r['i']}): {why}"
                                     + (f"; stderr: {text}" if text else ""))
                if len(bad) == len(runs):
                    return None
        finally:
            shutil.rmtree(errdir, ignore_errors=True)
        good = [r for r in runs if not failed_run(r, c["expect"])]
        wall = batch["wall_ns"] / 1e9
        rate = len(good) / wall
        exit_ms = [(r["exit_ns"] - r["start_ns"]) / 1e6 for r in good]
        gone_ms = [(r["gone_ns"] - r["start_ns"]) / 1e6 for r in good]
        return {"wall_s": wall, "vms_per_s": rate, "vms_per_s_per_core": rate / self.cores,
                "peak_rss_mib": batch["peak_rss_kib"] / 1024 if sample_us else None,
                "cpu_ms_per_vm": sum(r["cpu_us"] for r in good) / 1e3 / len(good), "vms_ok": len(good),
                "median_exit_ms": self.t.median(exit_ms), "median_gone_ms": self.t.median(gone_ms),
                "samples": batch["samples"], "launcher_cpu_ms": batch["self_cpu_us"] / 1e3,
                "harness_cpu_ms": (batch["children_cpu_us"] - sum(r["cpu_us"] for r in runs)) / 1e3}

    def run_all(self, contenders):
        """Rates and CPU come from batches without memory sampling: waking every 1 ms to
        sample steals CPU and wake-ups from the VMs (it cut the floor's rate by a quarter
        here). Peak memory comes from a second batch, with sampling, right after."""
        for c in contenders:
            c.update(batches=[], mem_batches=[], failures=[], vms_failed=0)
        for i in range(self.runs):
            k = i % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                for sample_us, into in ((0, c["batches"]), (self.sample_us, c["mem_batches"])):
                    if into is c["mem_batches"] and not sample_us:
                        continue
                    got = self.batch(c, sample_us)
                    if got:
                        into.append(got)
                    else:
                        self.failed = True
        return self.report(contenders)

    def report(self, contenders):
        t, med = self.t, self.t.median
        log = t.log
        log(f"Launch rate: {self.vms} VMs per batch, {self.concurrency} at once, medians of {self.runs} "
            f"interleaved batches; load average {self.load_start:.2f} before, {os.getloadavg()[0]:.2f} after")
        log(f"  (done = all its processes gone; /core = / {self.cores} host CPUs, min(concurrency, CPUs allowed);")
        log("   exit ms, gone ms: median from a VM's start to its exit status, to all gone; peak MiB: largest")
        log(f"   summed RSS of the live VM processes, sampled every {self.sample_us} us in a second batch: "
            "sampling slows VMs)")
        log(f"  {'contender':34} {'VMs ok':>9} {'VMs/s':>7} {'/core':>7} {'peak MiB':>9} {'CPU ms/VM':>10} "
            f"{'exit ms':>8} {'gone ms':>8}")
        out = {}
        for c in contenders:
            b = c["batches"]
            m = {key: med([x[key] for x in b]) for key in
                 ("vms_per_s", "vms_per_s_per_core", "cpu_ms_per_vm", "median_exit_ms", "median_gone_ms",
                  "wall_s", "launcher_cpu_ms", "harness_cpu_ms")}
            m["peak_rss_mib"] = med([x["peak_rss_mib"] for x in c["mem_batches"]])
            m["vms_per_s_while_sampling"] = med([x["vms_per_s"] for x in c["mem_batches"]])
            out[c["name"]] = {"label": c["label"], "argv": c["argv"], "expect": c["expect"], "median": m,
                              "batches": b, "memory_batches": c["mem_batches"], "failures": c["failures"],
                              "vms_failed": c["vms_failed"]}
            ok = sum(x["vms_ok"] for x in b)
            log(f"  {c['label']:34} {ok:>4}/{self.runs * self.vms:<4} {t.fmt(m['vms_per_s']):>7} "
                f"{t.fmt(m['vms_per_s_per_core']):>7} {t.fmt(m['peak_rss_mib']):>9} {t.fmt(m['cpu_ms_per_vm'], '.2f'):>10} "
                f"{t.fmt(m['median_exit_ms']):>8} {t.fmt(m['median_gone_ms']):>8}")
        for c in contenders:
            if c["failures"]:
                log(f"  ! {c['label']}: {c['vms_failed']} failed VM(s) in {len(c['failures'])} batch(es), "
                    f"first: {c['failures'][0]}")
        verdicts = {}
        rate = {n: v["median"]["vms_per_s"] for n, v in out.items()}
        for kiln, (floor, qemu) in JUDGED.items():
            if kiln not in out:
                continue
            vf, vq = t.ratio(rate[kiln], rate.get(floor)), t.ratio(rate[kiln], rate.get(qemu))
            v = {"vs_floor": vf, "vs_qemu": vq, "vs_floor_irqchip": t.ratio(rate[kiln], rate.get("floor_irqchip"))}
            log(f"  {out[kiln]['label']}: {t.fmt(vf, '.2f')}x floor, {t.fmt(vq, '.2f')}x QEMU "
                f"({out[qemu]['label'] if qemu in out else 'no QEMU'}), "
                f"{t.fmt(v['vs_floor_irqchip'], '.2f')}x floor with irqchip & PIT")
            v["targets"] = {}
            for what, got, target in ((f"rate >= {TARGET_VS_FLOOR}x floor", vf, TARGET_VS_FLOOR),
                                      (f"rate >= {TARGET_VS_QEMU}x QEMU", vq, TARGET_VS_QEMU)):
                status = "n/a" if got is None else "PASS" if got >= target else "FAIL"
                v["targets"][what] = status
                log(f"    target {what:22}: {t.fmt(got, '.2f')}x  {status}")
            verdicts[kiln] = v
        return {"vms": self.vms, "loadavg_start": self.load_start, "concurrency": self.concurrency, "cores": self.cores, "runs": self.runs,
                "sample_us": self.sample_us, "loadavg_end": os.getloadavg(), "contenders": out,
                "kiln": verdicts}


def bench_launch(tools, arts, contenders, vms, concurrency, runs, timeout, sample_us):
    """contenders: bench/run's startup contenders. Returns (results, failed)."""
    if not arts.get("launch") or not Path(arts["launch"]).is_file():
        tools.log("Launch rate: bench/kiln_bench_launch is missing (target kiln_bench_launch): skipped")
        return {"skipped": "kiln_bench_launch missing"}, True
    cs = sorted((c for c in contenders if c["name"] in NAMES), key=lambda c: NAMES.index(c["name"]))
    if not cs:
        tools.log("Launch rate: no contender: skipped")
        return {"skipped": "no contender"}, True
    b = Bench(tools, arts, vms, concurrency, runs, timeout, sample_us)
    return b.run_all(cs), b.failed
