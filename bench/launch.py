"""Launch rate (issue 6, item 5), run by bench/run: how many VMs a host starts and
finishes per second.

For each contender, kiln_bench_launch (bench/launch.c) starts N VMs, at most C at once,
a new one as soon as one is done, where done means all gone: every process the run
started has ended (kiln's deferred KVM teardown included), the same for every
contender. Per batch: wall time from the first start to the last all-gone, VMs/s,
VMs/s per host core (divided by min(C, CPUs this process may use)), peak memory (the
largest sum of RSS of all live contender processes, sampled every --launch-sample-us),
CPU seconds per VM (user + system of the VM's processes, leftovers included). Every
run's exit status is checked; a failed VM is reported and its batch is not counted.
The whole N-VM batch is repeated K times, contenders interleaved (the first rotating
each round), and medians are reported, with kiln / floor and kiln / QEMU and the
targets: kiln's rate >= 0.9x the floor's and >= 2x QEMU's.
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

    def batch(self, c):
        """One batch of self.vms runs of contender c; returns its figures or None."""
        errdir = tempfile.mkdtemp(prefix="kiln-bench-launch-")
        try:
            argv = [str(self.arts["launch"]), "-n", str(self.vms), "-c", str(self.concurrency),
                    "-e", str(c["expect"]), "-t", str(int(self.timeout)), "-s", str(self.sample_us),
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
                "peak_rss_mib": batch["peak_rss_kib"] / 1024 if self.sample_us else None,
                "cpu_ms_per_vm": sum(r["cpu_us"] for r in good) / 1e3 / len(good), "vms_ok": len(good),
                "median_exit_ms": self.t.median(exit_ms), "median_gone_ms": self.t.median(gone_ms),
                "samples": batch["samples"], "launcher_cpu_ms": batch["self_cpu_us"] / 1e3,
                "harness_cpu_ms": (batch["children_cpu_us"] - sum(r["cpu_us"] for r in runs)) / 1e3}

    def run_all(self, contenders):
        for c in contenders:
            c.update(batches=[], failures=[])
        for i in range(self.runs):
            k = i % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                got = self.batch(c)
                if got:
                    c["batches"].append(got)
                else:
                    self.failed = True
        return self.report(contenders)

    def report(self, contenders):
        t, med = self.t, self.t.median
        log = t.log
        log(f"Launch rate: {self.vms} VMs per batch, {self.concurrency} at once, medians of {self.runs} "
            f"interleaved batches; load average {os.getloadavg()[0]:.2f}")
        log(f"  (a VM is done when all its processes are gone; per core = / {self.cores} host CPUs, "
            f"min(concurrency, CPUs allowed); memory = peak of summed RSS, sampled every {self.sample_us} us)")
        log(f"  {'contender':34} {'ok':>5} {'VMs/s':>7} {'/core':>7} {'peak MiB':>9} {'CPU ms/VM':>10} "
            f"{'exit ms':>8} {'gone ms':>8}")
        out = {}
        for c in contenders:
            b = c["batches"]
            m = {key: med([x[key] for x in b if x[key] is not None]) for key in
                 ("vms_per_s", "vms_per_s_per_core", "peak_rss_mib", "cpu_ms_per_vm", "median_exit_ms",
                  "median_gone_ms", "wall_s", "launcher_cpu_ms", "harness_cpu_ms")}
            out[c["name"]] = {"label": c["label"], "argv": c["argv"], "expect": c["expect"], "median": m,
                              "batches": b, "failures": c["failures"]}
            log(f"  {c['label']:34} {len(b)}/{self.runs:<3} {t.fmt(m['vms_per_s']):>7} "
                f"{t.fmt(m['vms_per_s_per_core']):>7} {t.fmt(m['peak_rss_mib']):>9} {t.fmt(m['cpu_ms_per_vm'], '.2f'):>10} "
                f"{t.fmt(m['median_exit_ms']):>8} {t.fmt(m['median_gone_ms']):>8}")
        self.report_failures(contenders)
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
        return {"vms": self.vms, "concurrency": self.concurrency, "cores": self.cores, "runs": self.runs,
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
