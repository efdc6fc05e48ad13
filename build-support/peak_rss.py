"""Samples every process every 0.1 s and keeps OUT updated with the six highest resident set sizes seen, by
command line: the benchmarks' "peak memory of every process" figure. Runs until killed.

    python3 build-support/peak_rss.py OUT &
"""
import os
import sys
import time


def main(out: str) -> None:
    peak = {}
    while True:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = open(f"/proc/{pid}/status").read()
                name = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            label = " ".join(a.decode(errors="replace") for a in name[:3])[:90]
            if rss > peak.get(label, 0):
                peak[label] = rss
        with open(out, "w") as f:
            for label, rss in sorted(peak.items(), key=lambda kv: -kv[1])[:6]:
                f.write(f"    {rss / 1024:8.1f} MB  {label}\n")
        time.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1])
