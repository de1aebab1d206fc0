#!/usr/bin/env bash
# `build` of a 5-step Dockerfile (FROM, COPY, RUN, LABEL, CMD): a no-cache build and the fully
# cached rebuild, berth vs docker's legacy builder (DOCKER_BUILDKIT=0) through the CLIs.
# Docker's figures need a dockerd: the default socket, or DOCKER_BENCH_HOST=unix:///path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
start_daemon
load_busybox

CTX=$BENCH_DIR/ctx
mkdir -p "$CTX"
printf 'hello from the build benchmark\n' >"$CTX/app.txt"
cat >"$CTX/Dockerfile" <<'DF'
FROM busybox
COPY app.txt /app/app.txt
RUN echo built > /app/built.txt
LABEL berth-bench=build
CMD ["cat", "/app/app.txt"]
DF

DK=""
if [ -n "${DOCKER_BENCH_HOST:-}" ]; then
    DK="env DOCKER_BUILDKIT=0 DOCKER_HOST=$DOCKER_BENCH_HOST docker"
    DOCKER_HOST=$DOCKER_BENCH_HOST docker load -i "$BENCH_DIR/busybox.tar" >/dev/null || die "docker load failed"
elif docker_available; then
    DK="env DOCKER_BUILDKIT=0 DOCKER_HOST=$DK_HOST docker"
fi

# Warm the cache once on both sides (the cached figure is the rebuild).
$B build -q -t berth-bench-build "$CTX" >/dev/null
[ -n "$DK" ] && $DK build -q -t berth-bench-build "$CTX" >/dev/null 2>&1

args=(-N --warmup 2 --runs "${RUNS:-15}" --export-markdown "$RESULTS/build-nocache.md"
      -n "berth no-cache" "$B build --no-cache -t berth-bench-build $CTX")
[ -n "$DK" ] && args+=(-n "docker no-cache" "$DK build --no-cache -t berth-bench-build $CTX")
hyperfine "${args[@]}"

args=(-N --warmup 3 --runs "${RUNS_CACHED:-30}" --export-markdown "$RESULTS/build-cached.md"
      -n "berth cached" "$B build -t berth-bench-build $CTX")
[ -n "$DK" ] && args+=(-n "docker cached" "$DK build -t berth-bench-build $CTX")
hyperfine "${args[@]}"
[ -n "$DK" ] || echo "bench: no dockerd answering: docker's figures skipped"
{
    echo "5-step build (FROM, COPY, RUN, LABEL, CMD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg); docker: ${DK:+legacy builder, dockerd $($DK version --format '{{.Server.Version}}' 2>/dev/null)}"
    echo
    cat "$RESULTS/build-nocache.md"; echo; cat "$RESULTS/build-cached.md"
} >"$RESULTS/build.md"
# Leave docker as found: the benchmark's images (all carry the label) go, nothing else.
if [ -n "$DK" ]; then
    ids=$($DK images -a -q -f label=berth-bench=build | sort -u)
    [ -n "$ids" ] && $DK rmi -f $ids >/dev/null 2>&1 || true
fi
