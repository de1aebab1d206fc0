#!/usr/bin/env python3
"""Paired timing of two whole commands: N rounds, each running both (the order alternating
round by round), so drift in the machine's load hits both sides alike. Prints the mean and
median of each side and of the per-round difference B - A, with a 95% confidence interval.

usage: paired.py N 'NAME A' 'COMMAND A' 'NAME B' 'COMMAND B'   (commands split on spaces)
"""
import statistics as st
import subprocess
import sys
import time


def run(cmd):
    t = time.perf_counter_ns()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter_ns() - t) / 1e6


def main():
    n = int(sys.argv[1])
    name_a, a, name_b, b = sys.argv[2], sys.argv[3].split(), sys.argv[4], sys.argv[5].split()
    for _ in range(10):
        run(a)
        run(b)
    ta, tb = [], []
    for i in range(n):
        if i % 2:
            y, x = run(b), run(a)
        else:
            x, y = run(a), run(b)
        ta.append(x)
        tb.append(y)
    d = [y - x for x, y in zip(ta, tb)]
    ci = 1.96 * st.stdev(d) / len(d) ** 0.5
    print(f"| Command | Mean [ms] | Median [ms] |")
    print(f"|:---|---:|---:|")
    print(f"| `{name_a}` | {st.mean(ta):.2f} | {st.median(ta):.2f} |")
    print(f"| `{name_b}` | {st.mean(tb):.2f} | {st.median(tb):.2f} |")
    print(f"| difference, paired by round | {st.mean(d):.2f} ± {ci:.2f} (95% CI) | {st.median(d):.2f} |")
    print()
    print(f"{n} rounds, the order alternating; load average {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
