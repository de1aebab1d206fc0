#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup and the helpers run from traps and functions
# The tutorial as an end-to-end test: run as root on a Debian 12 machine (it installs what it
# needs with apt). Offline from Docker Hub: its images are made here.
#
#  1. debian:bookworm by `debootstrap --variant=minbase` from the host's Debian mirror (cached as
#     a tarball in $E2E_CACHE, default /var/cache/berth-e2e; rebuilt when absent), `berth import`ed;
#  2. a Berth daemon of its own (temporary roots and socket, its own bridge and subnet) whose Docker
#     Hub mirror is a local `berth registry serve`;
#  3. postgres:latest and python:3-slim built by `berth build` from tests/e2e/fixtures/ (their
#     RUN steps reach apt and PyPI through Berth's NAT), and hello-world from berth-test-image,
#     pushed to that registry and removed, so the tutorial really pulls;
#  4. the tutorial's steps, typed as a user types them, with `berth` and then (where a docker CLI
#     is installed) with `docker`, printed as a transcript ("$ command", then its output).
#
# Exits non-zero, naming the step, at the first failed check. Cleans up everything it made
# (containers, daemon, registry, mounts, bridge, nftables table, temp dirs) on every exit.
#
# Environment: BERTH (berth binary, default target/debug/berth, built when absent), E2E_CACHE,
# E2E_MIRROR (Debian mirror for debootstrap; default: the host's), E2E_TMP (parent of the temp
# dir, default /tmp), E2E_KEEP=1 (keep the temp dir: daemon and registry logs), E2E_DOCKER=0
# (skip the docker CLI pass).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FIX=$REPO/tests/e2e/fixtures
BERTH=${BERTH:-$REPO/target/debug/berth}
TEST_IMAGE=${TEST_IMAGE:-$(dirname "$BERTH")/berth-test-image}
CACHE=${E2E_CACHE:-/var/cache/berth-e2e}
T0=$(date +%s)

STEP="setup"
FAILED=""
fail() {
    FAILED="e2e: FAILED at step \"$STEP\": $*"
    echo >&2
    echo "$FAILED" >&2
    exit 1
}
step() {
    STEP=$1
    echo
    echo "=== $1  ($(($(date +%s) - T0))s)"
}
note() { echo "e2e: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "e2e: run as root (the daemon creates namespaces, cgroups, mounts and nftables rules)" >&2
    exit 1
fi

# --- apt packages -------------------------------------------------------------------------------
step "install apt packages"
# musl-tools: berth-test-image compiles the static hello-world program when it runs.
need=(debootstrap postgresql-client curl ca-certificates nftables iproute2 tar gzip util-linux musl-tools)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    note "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
else
    note "apt packages present: ${need[*]}"
fi

# --- the berth binary ---------------------------------------------------------------------------
if [ ! -x "$BERTH" ] || [ ! -x "$TEST_IMAGE" ]; then
    step "build berth"
    (cd "$REPO" && cargo build -p berth -p berth-testkit) || fail "cargo build -p berth -p berth-testkit"
fi
[ -x "$BERTH" ] || fail "no berth binary at $BERTH"
[ -x "$TEST_IMAGE" ] || fail "no berth-test-image binary at $TEST_IMAGE"

# --- temp dir, cleanup --------------------------------------------------------------------------
mkdir -p "${E2E_TMP:-/tmp}"
WORK=$(mktemp -d "${E2E_TMP:-/tmp}/e2e.XXXXXX") || fail "mktemp"
SOCK=$WORK/berth.sock
DATA=$WORK/data
EXEC=$WORK/exec
# The daemon's bridge (at most 15 characters) and a /24 no host route covers.
BRIDGE=be2e$$
BRIDGE=${BRIDGE:0:15}
routes=$(ip -4 route show 2>/dev/null)
NET=""
for i in $(seq $(($$ % 200)) 255) $(seq 0 255); do
    grep -q "^10\.250\.$i\." <<<"$routes" && continue
    [ -e "/tmp/berth-e2e-net-$i" ] && kill -0 "$(cat "/tmp/berth-e2e-net-$i" 2>/dev/null)" 2>/dev/null && continue
    echo $$ >"/tmp/berth-e2e-net-$i"
    NET=$i
    break
done
[ -n "$NET" ] || fail "no free 10.250.x.0/24 subnet for the daemon's bridge"
DAEMON_PID=""
REG_PID=""

mounts_under() {
    awk -v d="$1" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r
}
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    echo
    echo "=== cleanup"
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        ids=$("$BERTH" -H "unix://$SOCK" ps -aq 2>/dev/null)
        # shellcheck disable=SC2086 # one id per word
        [ -n "$ids" ] && timeout 60 "$BERTH" -H "unix://$SOCK" rm -f -v $ids >/dev/null 2>&1
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
    wait 2>/dev/null
    # Shims outlive the daemon by design: kill those left, and any process rooted in our dirs.
    for f in "$EXEC"/containers/*/shim.pid "$EXEC"/exec/*/shim.pid; do
        [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        case "$r" in "$WORK"/*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
    done
    for _ in 1 2 3; do
        for m in $(mounts_under "$WORK"); do umount -l "$m" 2>/dev/null; done
    done
    nft delete table ip "berth_$BRIDGE" 2>/dev/null
    nft -a list chain ip filter FORWARD 2>/dev/null | grep -F "comment \"berth:berth_$BRIDGE\"" |
        sed -n 's/.*# handle \([0-9]*\).*/\1/p' | while read -r h; do
            nft delete rule ip filter FORWARD handle "$h"
        done
    [ -e "/sys/class/net/$BRIDGE" ] && ip link del "$BRIDGE"
    rm -f "/tmp/berth-e2e-net-$NET"
    if [ "$rc" = 0 ]; then
        echo "e2e: PASSED in $(($(date +%s) - T0))s"
    else
        if [ -s "$WORK/daemon.log" ] && [ "${E2E_KEEP:-0}" != 1 ]; then
            echo "e2e: the daemon's last log lines:" >&2
            tail -n 30 "$WORK/daemon.log" >&2
        fi
        echo "${FAILED:-e2e: FAILED at step \"$STEP\"} (exit $rc, after $(($(date +%s) - T0))s)" >&2
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "e2e: kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The transcript. `run "CMD" [TIMEOUT]` prints "$ CMD" as a user types it, runs it through bash
# (so the transcript is the command that ran), prints its output (stdout and stderr as they
# came), and leaves that output in OUT and the exit status in RC. `ok "CMD"` also fails the step
# when CMD fails.
BIN=$WORK/bin
mkdir -p "$BIN"
ln -s "$BERTH" "$BIN/berth"
export PATH=$BIN:$PATH
export BERTH_HOST=unix://$SOCK
unset DOCKER_HOST
run() {
    local cmd=$1 to=${2:-300}
    printf '$ %s\n' "$cmd"
    timeout -k 10 "$to" bash -c "$cmd" >"$WORK/out" 2>&1
    RC=$?
    OUT=$(cat "$WORK/out")
    [ -n "$OUT" ] && printf '%s\n' "$OUT"
    ((RC == 124)) && echo "[timed out after ${to}s]"
    ((RC != 0 && RC != 124)) && echo "[exit status $RC]"
    return 0
}
ok() {
    run "$@"
    ((RC == 0)) || fail "\`$1\` exited with status $RC"
}
# Quiet variant for the fixture set-up: the command, then only its last lines (all on failure).
quiet() {
    local cmd=$1 to=${2:-900} t=$SECONDS
    printf '$ %s\n' "$cmd"
    timeout -k 10 "$to" bash -c "$cmd" >"$WORK/out" 2>&1
    RC=$?
    if ((RC != 0)); then
        cat "$WORK/out"
        fail "\`$cmd\` exited with status $RC"
    fi
    tail -n "${QUIET_LINES:-3}" "$WORK/out" | sed 's/^/    /'
    echo "    ($((SECONDS - t))s)"
}
# Retries CMD (silently) once a second for up to N seconds; 0 when it succeeded.
retry() {
    local n=$1 cmd=$2 i
    for ((i = 0; i < n; i++)); do
        timeout 10 bash -c "$cmd" >/dev/null 2>&1 && { WAITED=$i; return 0; }
        sleep 1
    done
    return 1
}
is_id() { [[ $1 =~ ^[0-9a-f]{64}$ ]]; }

# --- debian:bookworm ----------------------------------------------------------------------------
step "debian:bookworm (debootstrap --variant=minbase)"
MIRROR=${E2E_MIRROR:-$("$REPO/scripts/debian-mirror")} || fail "no Debian mirror in apt's sources (set E2E_MIRROR)"
BASE_TAR=$CACHE/debian-bookworm-minbase.tar.gz
if [ -s "$BASE_TAR" ]; then
    note "cached: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1)); delete it to rebuild"
else
    mkdir -p "$CACHE" || fail "mkdir $CACHE"
    ROOTFS=$WORK/rootfs
    quiet "debootstrap --variant=minbase bookworm $ROOTFS $MIRROR" 1800
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/etc/hostname
    tar --numeric-owner -C "$ROOTFS" -I "gzip -1" -cf "$BASE_TAR.tmp" . || fail "tar of the debootstrap tree"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$ROOTFS"
    note "saved $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
fi

# --- registry and daemon ------------------------------------------------------------------------
step "start a registry and a Berth daemon"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
REG_PORT=${E2E_REG_PORT:-5080}
while ! port_free "$REG_PORT"; do REG_PORT=$((REG_PORT + 1)); done
REG=127.0.0.1:$REG_PORT
"$BERTH" registry serve --addr "$REG" --storage "$WORK/registry" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
retry 20 "curl -sf http://$REG/v2/" || fail "the registry did not answer on $REG: $(cat "$WORK/registry.log")"
# An empty configuration file of its own: the host's /etc/berth/daemon.json is not for this daemon.
echo '{}' >"$WORK/daemon.json"
"$BERTH" daemon --config-file "$WORK/daemon.json" -H "unix://$SOCK" --data-root "$DATA" --exec-root "$EXEC" \
    --bridge "$BRIDGE" --bip "10.250.$NET.1/24" --default-address-pool "base=10.251.$NET.0/24,size=26" \
    --registry-mirror "http://$REG" --insecure-registry "$REG" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
retry 20 "berth version" || fail "the daemon did not answer on $SOCK: $(tail -20 "$WORK/daemon.log")"
note "daemon pid $DAEMON_PID on $SOCK (bridge $BRIDGE, 10.250.$NET.0/24), registry http://$REG as its Docker Hub mirror"

# --- fixture images -----------------------------------------------------------------------------
step "fixture images"
ok "berth import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD [\"bash\"]' $BASE_TAR debian:bookworm"
CTX=$WORK/ctx
mkdir -p "$CTX"
cp -r "$FIX/postgres" "$CTX/postgres"
cp -r "$FIX/python" "$CTX/python"
cp /etc/ssl/certs/ca-certificates.crt "$CTX/python/" || fail "no /etc/ssl/certs/ca-certificates.crt on the host"
# The two builds run side by side (each mostly waits for the Debian mirror).
t=$SECONDS
pids=()
for f in postgres:latest:postgres python:3-slim:python; do
    echo "\$ berth build -t ${f%:*} $CTX/${f##*:} >build-${f##*:}.log &"
    timeout -k 10 1200 berth build -t "${f%:*}" "$CTX/${f##*:}" >"$WORK/build-${f##*:}.log" 2>&1 &
    pids+=($!)
done
for i in 0 1; do
    f=$([ $i = 0 ] && echo postgres || echo python)
    if ! wait "${pids[$i]}"; then
        cat "$WORK/build-$f.log"
        fail "the $f fixture image did not build"
    fi
    tail -n 2 "$WORK/build-$f.log" | sed 's/^/    /'
done
echo "    ($((SECONDS - t))s)"
quiet "$TEST_IMAGE hello-world -o $WORK/hello-world.tar && berth load -i $WORK/hello-world.tar"
for img in postgres:latest python:3-slim hello-world:latest; do
    QUIET_LINES=1 quiet "berth tag $img $REG/library/$img && berth push $REG/library/$img"
done
quiet "berth rmi $REG/library/postgres:latest $REG/library/python:3-slim $REG/library/hello-world:latest postgres:latest python:3-slim hello-world:latest debian:bookworm"
ok "berth images"
[ "$(berth images -q | wc -l)" = 0 ] || fail "images are left before the tutorial: $(berth images)"

# --- the tutorial -------------------------------------------------------------------------------
# $1: the CLI as the user types it (berth or docker).
tutorial() {
    local C=$1 id flask pipenv before
    export PGPASSWORD='password!'
    local PSQL="psql -h 0.0.0.0 -p 5435 -U postgres"

    step "$C: pull postgres"
    ok "$C pull postgres:latest" 900
    ok "$C images postgres"
    grep -q '^postgres  *latest ' <<<"$OUT" || fail "postgres:latest is not listed after the pull"

    step "$C: run postgres without a password"
    run "$C run --rm postgres:latest" 120
    ((RC != 0)) || fail "postgres started without POSTGRES_PASSWORD"
    grep -q "superuser password is not specified" <<<"$OUT" || fail "no clear message without a password"

    step "$C: run postgres"
    ok "$C run --name psql -e POSTGRES_PASSWORD=password! -p 5435:5432 -d postgres:latest" 120
    id=$(tail -n1 <<<"$OUT")
    is_id "$id" || fail "run -d printed \"$id\", not a 64-hex container id"
    retry 90 "$PSQL -c 'SELECT 1'" || {
        run "$C logs psql"
        fail "psql could not connect to 0.0.0.0:5435 within 90 s"
    }
    note "postgres accepted connections after ${WAITED}s"
    echo "(PGPASSWORD='password!' is set: psql would ask for it)"
    ok "$PSQL -c \"CREATE TABLE tutorial (id serial PRIMARY KEY, name text); INSERT INTO tutorial (name) VALUES ('Bill'), ('Ada'); SELECT * FROM tutorial;\""
    grep -q "(2 rows)" <<<"$OUT" || fail "the query did not return the 2 rows it inserted"

    step "$C: ps, stop, start"
    ok "$C ps -a"
    grep -E "postgres:latest .* Up .* psql$" <<<"$OUT" >/dev/null || fail "ps -a does not list psql as running"
    ok "$C stop psql" 60
    [ "$OUT" = psql ] || fail "stop printed \"$OUT\", not psql"
    ok "$C ps -a"
    grep -E " Exited \([0-9]+\) .* psql$" <<<"$OUT" >/dev/null || fail "ps -a does not show psql exited"
    ok "$C start psql" 60
    [ "$OUT" = psql ] || fail "start printed \"$OUT\", not psql"
    retry 90 "$PSQL -c 'SELECT 1'" || {
        run "$C logs psql"
        fail "psql could not connect again after start"
    }
    ok "$PSQL -c 'SELECT name FROM tutorial ORDER BY id;'"
    { grep -q " Bill" <<<"$OUT" && grep -q " Ada" <<<"$OUT"; } || fail "the table's rows are gone after stop and start"

    step "$C: rm"
    run "$C rm psql" 60
    ((RC != 0)) || fail "rm removed a running container"
    grep -qi "container is running" <<<"$OUT" || fail "rm of a running container: unexpected error \"$OUT\""
    ok "$C stop psql" 60
    ok "$C rm psql" 60
    [ "$OUT" = psql ] || fail "rm printed \"$OUT\", not psql"
    ok "$C ps -a"
    grep -q " psql$" <<<"$OUT" && fail "psql is still listed after rm"

    step "$C: the Flask app"
    cd "$FIX/hello_flask" || fail "no $FIX/hello_flask"
    echo "\$ cd ${PWD#"$REPO"/}"
    ok "cat app.py Dockerfile"
    ok "$C build --tag hello_flask ." 900
    if [ "$C" = docker ] && [ "$BUILDX_OK" = 1 ]; then
        # With the buildx plugin, `docker build` is buildx's: BuildKit's API on Berth.
        grep -q "using docker driver" <<<"$OUT" || fail "docker build did not use buildx's docker driver"
        grep -q "naming to docker.io/library/hello_flask:latest" <<<"$OUT" ||
            fail "buildx did not name the image hello_flask"
        note "docker build ran through buildx's docker driver, on Berth's builder"
    fi
    ok "$C run -d -p 80:8080 hello_flask" 120
    flask=$(tail -n1 <<<"$OUT")
    is_id "$flask" || fail "run -d printed \"$flask\", not a 64-hex container id"
    retry 60 "curl -sf http://0.0.0.0/" || {
        run "$C logs $flask"
        fail "the Flask app did not answer on http://0.0.0.0/ within 60 s"
    }
    ok "curl -s http://0.0.0.0/" 30
    [ "$OUT" = "Hello Bill from Flask!" ] || fail "curl returned \"$OUT\""
    ok "$C ps"
    grep -q "hello_flask" <<<"$OUT" || fail "ps does not list the hello_flask container"

    before=$($C ps -aq | sort)
    ok "$C run --rm --entrypoint python hello_flask -c 'import flask; print(\"flask works\")'" 120
    grep -q "^flask " <<<"$OUT" || fail "run --rm printed \"$OUT\""
    ok "$C ps -a"
    [ "$($C ps -aq | sort)" = "$before" ] || fail "run --rm left a container behind"

    step "$C: the slip: run hello_flask -rm"
    before=$($C ps -aq | sort)
    printf '$ %s\n' "$C run hello_flask -rm"
    timeout -k 5 120 "$C" run hello_flask -rm >"$WORK/slip.out" 2>"$WORK/slip.err" &
    local slip=$!
    retry 60 "grep -q 'Running on' $WORK/slip.out $WORK/slip.err" || {
        cat "$WORK/slip.out" "$WORK/slip.err"
        fail "hello_flask -rm did not start the app"
    }
    # Ctrl-C, as the user would (the CLI passes it on to the container).
    kill -INT "$slip" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$slip" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$slip" 2>/dev/null
    wait "$slip" 2>/dev/null
    cat "$WORK/slip.out" "$WORK/slip.err"
    echo "^C"
    if grep -q "options go before the image name" "$WORK/slip.err"; then
        note "the CLI warned on stderr that run's options go before the image name"
    elif [ "$C" = berth ] && grep -qa "options go before the image name" "$BERTH"; then
        fail "berth printed no warning about \"-rm\" after the image name"
    else
        note "this $C printed no warning about \"-rm\" after the image name"
    fi
    local slipped
    slipped=$(comm -13 <(echo "$before") <($C ps -aq | sort))
    [ -n "$slipped" ] || fail "the container of \`run hello_flask -rm\` was removed (Docker keeps it)"
    ok "$C inspect --format '{{json .Config.Cmd}}' $slipped"
    [ "$OUT" = '["-rm"]' ] || fail "\"-rm\" did not become the container's command: $OUT"
    ok "$C ps -a"
    ok "$C rm -f $slipped" 60

    step "$C: hello-world"
    ok "$C run hello-world" 300
    grep -q "^Hello from" <<<"$OUT" || fail "hello-world did not greet"

    step "$C: the Flask app with pipenv"
    cd "$FIX/hello_flask_pipenv" || fail "no $FIX/hello_flask_pipenv"
    echo "\$ cd ${PWD#"$REPO"/}"
    ok "cat Pipfile Dockerfile"
    ok "$C build --tag hello_flask_pipenv ." 1200
    ok "$C run -d -p 8081:8080 hello_flask_pipenv" 120
    pipenv=$(tail -n1 <<<"$OUT")
    retry 60 "curl -sf http://0.0.0.0:8081/" || {
        run "$C logs $pipenv"
        fail "the pipenv Flask app did not answer on http://0.0.0.0:8081/ within 60 s"
    }
    ok "curl -s http://0.0.0.0:8081/" 30
    [ "$OUT" = "Hello Bill from Flask!" ] || fail "curl returned \"$OUT\""
    cd "$REPO" || exit 1

    step "$C: clean up the tutorial's containers and images"
    ok "$C rm -f $flask $pipenv" 60
    local left
    left=$($C ps -aq)
    [ -n "$left" ] && ok "$C rm -f ${left//$'\n'/ }" 60
    ok "$C rmi hello_flask hello_flask_pipenv postgres:latest python:3-slim hello-world:latest" 120
    unset PGPASSWORD
}

BUILDX_OK=0
tutorial berth

if [ "${E2E_DOCKER:-1}" = 0 ]; then
    note "E2E_DOCKER=0: the docker CLI pass is skipped"
elif ! command -v docker >/dev/null; then
    note "no docker CLI installed: the docker CLI pass is skipped"
else
    step "docker CLI"
    note "the same steps with the docker CLI ($(command -v docker)), DOCKER_HOST=unix://$SOCK"
    export DOCKER_HOST=unix://$SOCK
    # `docker build` goes through the buildx plugin when there is one: $BUILDX, or the CLI's.
    if [ -n "${BUILDX:-}" ]; then
        export DOCKER_CONFIG=$WORK/docker-config
        mkdir -p "$DOCKER_CONFIG/cli-plugins"
        ln -sf "$BUILDX" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
    fi
    if docker buildx version >/dev/null 2>&1; then
        BUILDX_OK=1
        note "buildx: $(docker buildx version 2>/dev/null | head -n1): docker build uses BuildKit's API"
    else
        note "SKIPPED: the buildx pass of the Flask build (no buildx: set BUILDX or install the docker-buildx plugin); docker build uses the legacy builder"
    fi
    ok "docker version --format '{{.Client.Version}} client, {{.Server.Version}} server, API {{.Server.APIVersion}}'"
    tutorial docker
fi

STEP="done"
exit 0
