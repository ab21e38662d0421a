"""What the benchmark modules bench/run imports (placement.py, net.py) share."""


class ModuleBench:
    def __init__(self, tools, arts, qemu, qemu_machine, qemu_common, seconds, runs):
        self.t = tools  # run_once, median, log, fmt, ratio, describe_failure, tail
        self.arts = arts
        self.qemu = qemu
        self.qemu_machine = qemu_machine
        self.qemu_common = qemu_common
        self.seconds = seconds
        self.runs = runs
        self.failed = False

    def report_failures(self, contenders):
        for c in contenders:
            if c.get("failures"):
                self.t.log(f"  ! {c['label']}: {len(c['failures'])} failed run(s), first: {c['failures'][0]}")
