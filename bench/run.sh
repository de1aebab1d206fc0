#!/usr/bin/env bash
# Runs every benchmark; each writes bench/results/<name>.md. Docker's figures stand beside
# Berth's when a dockerd answers on its default socket.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for b in run-rm create ps start-to-ping rss run-rm-net port-throughput build pull; do
    echo "== $b"
    bash "$here/$b.sh"
done
{
    echo "# Berth benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), load average $(cut -d" " -f1-3 /proc/loadavg))"
    for b in run-rm create ps start-to-ping rss run-rm-net port-throughput build pull; do
        echo
        echo "## $b"
        echo
        cat "$here/results/$b.md"
    done
} >"$here/results/summary.md"
echo "bench: results in $here/results/summary.md"
