#!/usr/bin/env bash
# `docker build` through the buildx plugin (BuildKit's API, the docker driver) of a 5-step
# Dockerfile (FROM, COPY, RUN, LABEL, CMD): a no-cache build and the fully cached rebuild,
# Berth's builder vs dockerd's BuildKit, side by side, the same client for both.
# Needs the docker CLI with buildx ($BUILDX or the CLI plugin) and a dockerd for docker's figures
# (bench/dockerd.sh's: DOCKER_BENCH_HOST=unix:///path, or docker's default socket).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
command -v docker >/dev/null || die "no docker CLI: buildx builds need it"
start_daemon
load_busybox

# A docker config of our own, with buildx as its plugin.
DOCKER_CONFIG=$BENCH_DIR/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
if [ -n "${BUILDX:-}" ]; then
    ln -s "$BUILDX" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
else
    for d in /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do
        if [ -x "$d/docker-buildx" ]; then ln -s "$d/docker-buildx" "$DOCKER_CONFIG/cli-plugins/"; break; fi
    done
fi
export DOCKER_CONFIG
docker buildx version >/dev/null 2>&1 || die "no buildx: set BUILDX or install the docker-buildx CLI plugin"

CTX=$BENCH_DIR/ctx
mkdir -p "$CTX"
printf 'hello from the build benchmark\n' >"$CTX/app.txt"
cat >"$CTX/Dockerfile" <<'DF'
FROM busybox
COPY app.txt /app/app.txt
RUN echo built > /app/built.txt
LABEL berth-bench=buildkit
CMD ["cat", "/app/app.txt"]
DF

BX="env DOCKER_HOST=$HOST docker build -q"
DK=""
if [ -n "${DOCKER_BENCH_HOST:-}" ]; then
    DK="env DOCKER_HOST=$DOCKER_BENCH_HOST docker build -q"
    DOCKER_HOST=$DOCKER_BENCH_HOST docker load -i "$BENCH_DIR/busybox.tar" >/dev/null || die "docker load failed"
elif docker_available; then
    DK="env DOCKER_HOST=$DK_HOST docker build -q"
fi

# Both must really use BuildKit's API (buildx's docker driver).
out=$(env DOCKER_HOST="$HOST" docker build -t berth-bench-buildkit "$CTX" 2>&1) || true
grep -q "using docker driver" <<<"$out" ||
    die "berth: docker build did not use buildx's docker driver: $out"
[ -n "$DK" ] && { $DK -t berth-bench-buildkit "$CTX" >/dev/null 2>&1 || die "dockerd build failed"; }

args=(-N --warmup 2 --runs "${RUNS:-15}" --export-markdown "$RESULTS/buildkit-nocache.md"
      -n "berth no-cache" "$BX --no-cache -t berth-bench-buildkit $CTX")
[ -n "$DK" ] && args+=(-n "dockerd no-cache" "$DK --no-cache -t berth-bench-buildkit $CTX")
hyperfine "${args[@]}"

args=(-N --warmup 3 --runs "${RUNS_CACHED:-30}" --export-markdown "$RESULTS/buildkit-cached.md"
      -n "berth cached" "$BX -t berth-bench-buildkit $CTX")
[ -n "$DK" ] && args+=(-n "dockerd cached" "$DK -t berth-bench-buildkit $CTX")
hyperfine "${args[@]}"

# The client's own cost, the floor of both: the CLI, plugin discovery, buildx's start.
hyperfine -N --warmup 2 --runs "${RUNS_CACHED:-30}" --export-markdown "$RESULTS/buildkit-client.md" \
    -n "docker buildx version" "docker buildx version"

[ -n "$DK" ] || echo "bench: no dockerd answering: docker's figures skipped"
{
    echo "buildx build of a 5-step Dockerfile (FROM, COPY, RUN, LABEL, CMD), docker driver on both sides, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg); buildx $(docker buildx version 2>/dev/null | awk '{print $2}'); docker: ${DK:+dockerd $(DOCKER_HOST=${DOCKER_BENCH_HOST:-$DK_HOST} docker version --format '{{.Server.Version}}' 2>/dev/null) with its BuildKit}"
    echo
    cat "$RESULTS/buildkit-nocache.md"; echo; cat "$RESULTS/buildkit-cached.md"; echo
    echo "The client alone (the floor under both sides' figures):"
    echo; cat "$RESULTS/buildkit-client.md"
} >"$RESULTS/buildkit.md"
# Leave dockerd as found: the benchmark's images (all carry the label) go.
if [ -n "$DK" ]; then
    DH=${DOCKER_BENCH_HOST:-$DK_HOST}
    ids=$(DOCKER_HOST=$DH docker images -a -q -f label=berth-bench=buildkit | sort -u)
    [ -n "$ids" ] && DOCKER_HOST=$DH docker rmi -f $ids >/dev/null 2>&1 || true
fi
