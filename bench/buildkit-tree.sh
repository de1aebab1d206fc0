#!/usr/bin/env bash
# The same Dockerfile built by buildx against Berth and against a dockerd's BuildKit, and the
# resulting file trees compared entry by entry (path, type, permission bits, owner, size,
# content digest, link target; not mtimes). The Dockerfile has the syntax directive, heredocs
# (RUN and COPY), a cache mount whose counter must reach 2 over two builds, a secret checked in
# its step, a bind mount from another stage, COPY --chmod, WORKDIR, COPY from the context, and
# --target skipping a failing stage. Writes bench/results/buildkit-tree.md.
#
# Needs: the docker CLI with buildx ($BUILDX or the CLI plugin), python3, and a dockerd
# (DOCKER_BENCH_HOST=unix:///path, e.g. bench/dockerd.sh's) that can resolve the
# `docker/dockerfile:1` frontend image the syntax directive names: from Docker Hub, or loaded
# from DOCKERFILE_FRONTEND_TAR (an offline machine needs that image built elsewhere).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_tools
command -v python3 >/dev/null || die "python3 is needed to list the trees"
[ -n "${DOCKER_BENCH_HOST:-}" ] || die "DOCKER_BENCH_HOST must name the dockerd to compare with"
start_daemon
load_busybox

DOCKER_CONFIG=$BENCH_DIR/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
if [ -n "${BUILDX:-}" ]; then
    ln -s "$BUILDX" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
else
    for d in /usr/local/lib/docker/cli-plugins /usr/lib/docker/cli-plugins; do
        if [ -x "$d/docker-buildx" ]; then ln -s "$d/docker-buildx" "$DOCKER_CONFIG/cli-plugins/"; break; fi
    done
fi
export DOCKER_CONFIG
docker buildx version >/dev/null 2>&1 || die "no buildx: set BUILDX or install the docker-buildx CLI plugin"
DOCKER_HOST=$DOCKER_BENCH_HOST docker load -i "$BENCH_DIR/busybox.tar" >/dev/null
if [ -n "${DOCKERFILE_FRONTEND_TAR:-}" ]; then
    DOCKER_HOST=$DOCKER_BENCH_HOST docker load -i "$DOCKERFILE_FRONTEND_TAR" >/dev/null
fi

CTX=$BENCH_DIR/ctx
mkdir -p "$CTX"
echo app >"$CTX/app.txt"
printf 's3cr3t-value' >"$BENCH_DIR/token"
cat >"$CTX/Dockerfile" <<'DF'
# syntax=docker/dockerfile:1
FROM busybox AS tools
RUN mkdir -p /opt && echo tool-output > /opt/tool.txt

FROM busybox AS unused
RUN exit 1

FROM busybox AS final
ARG N
ARG CID
RUN --mount=type=cache,id=$CID,target=/var/cache/counter <<EOF
echo "$N" >> /var/cache/counter/runs
wc -l < /var/cache/counter/runs | tr -d ' ' > /runs
EOF
RUN --mount=type=secret,id=token test "$(sha256sum < /run/secrets/token | cut -c1-64)" = 1f3fa74b1208842aad0b685f0cd06053a9e84f0eb7f2c1c94c96ea25cb13cd77 && echo secret-ok > /secret-ok
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/tools cp /mnt/tools/tool.txt /tool.txt
COPY --chmod=0755 <<EOF /usr/local/bin/greet
#!/bin/sh
echo greetings
EOF
WORKDIR /app
COPY app.txt ./

FROM final AS later
RUN exit 1
DF

cat >"$BENCH_DIR/list.py" <<'PY'
import hashlib, sys, tarfile
t = tarfile.open(sys.argv[1])
out = []
for m in t.getmembers():
    p = m.name.lstrip("./").rstrip("/")
    if not p:
        continue
    kind = {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.LNKTYPE: "h"}.get(m.type, "f" if m.isfile() else "?")
    extra = ""
    if m.isfile():
        extra = "%s %d" % (hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16], m.size)
    elif m.issym() or m.islnk():
        extra = "-> " + m.linkname
    out.append("%s %s %04o %d:%d %s" % (p, kind, m.mode & 0o7777, m.uid, m.gid, extra))
print("\n".join(sorted(out)))
PY

CID=tree-$$-$(date +%s)
tree() { # tree NAME DOCKER_HOST: builds twice (the counter reaches 2), lists the tar output
    local name=$1 host=$2 n
    for n in 1 2; do
        DOCKER_HOST=$host docker build --target final --secret "id=token,src=$BENCH_DIR/token" \
            --build-arg "N=$n" --build-arg "CID=$CID" \
            -o "type=tar,dest=$BENCH_DIR/$name.tar" "$CTX" >"$BENCH_DIR/$name.log" 2>&1 ||
            { cat "$BENCH_DIR/$name.log" >&2; die "$name: the build failed"; }
    done
    python3 "$BENCH_DIR/list.py" "$BENCH_DIR/$name.tar" >"$BENCH_DIR/$name.list"
}
tree berth "$HOST"
tree dockerd "$DOCKER_BENCH_HOST"

grep -q '^runs f 0644 0:0 53c234e5e8472b6a 2$' "$BENCH_DIR/berth.list" || die "berth: the cache mount's counter did not reach 2"
dver=$(DOCKER_HOST=$DOCKER_BENCH_HOST docker version --format '{{.Server.Version}}')
{
    echo "File trees of the same Dockerfile built by buildx $(docker buildx version | awk '{print $2}') against Berth and against dockerd $dver's BuildKit, $(date -u +%Y-%m-%dT%H:%MZ) (bench/buildkit-tree.sh)."
    echo
    echo "Entries: berth $(wc -l <"$BENCH_DIR/berth.list"), dockerd $(wc -l <"$BENCH_DIR/dockerd.list")."
    echo
    if diff -q "$BENCH_DIR/berth.list" "$BENCH_DIR/dockerd.list" >/dev/null; then
        echo "The trees are identical."
    else
        echo "Entries that differ (< berth, > dockerd):"
        echo
        echo '```'
        diff "$BENCH_DIR/berth.list" "$BENCH_DIR/dockerd.list" | grep '^[<>]' || true
        echo '```'
        echo
        echo "Expected difference: dockerd 20.10 embeds BuildKit v0.8, whose executor leaves in the layer"
        echo "the empty directories it created as mount points (here /mnt/tools, /run/secrets,"
        echo "/var/cache/counter and their parents). BuildKit v0.11 and later, as in Docker 23+, remove"
        echo "them after the step (executor/stubs.go: \"stubs cleaner should recursively remove empty"
        echo "directory mounts\"); Berth's builder does the same. Any other entry listed above is a bug."
    fi
    echo
    echo "The tree (berth's):"
    echo
    echo '```'
    grep -v '^bin/' "$BENCH_DIR/berth.list"
    echo "(and $(grep -c '^bin/' "$BENCH_DIR/berth.list") entries under bin/)"
    echo '```'
} >"$RESULTS/buildkit-tree.md"
cat "$RESULTS/buildkit-tree.md"
