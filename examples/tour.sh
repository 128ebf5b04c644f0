#!/usr/bin/env bash
# The README's one-minute tour, as a script that a test runs
# (tests/integration/tour.rs), so the tour cannot rot.
#
# It starts handoff on the example server in the background, restarts it
# twice while a curl loop keeps requesting, and exits 1 if any request
# failed. Everything it makes lives in a temp dir, removed at exit.
#
#   cargo install --path . && cargo build --release --examples
#   examples/tour.sh
#
# Environment (all optional):
#   HANDOFF     the handoff binary (default: `handoff` on PATH, else
#               target/release/handoff)
#   SERVER      the server to run (default: target/release/examples/hello)
#   TOUR_PORT   the port to listen on (default 8080; 0: any free port)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${HANDOFF:-}" ]; then
    HANDOFF=$(command -v handoff || echo "$repo/target/release/handoff")
fi
SERVER=${SERVER:-$repo/target/release/examples/hello}
port=${TOUR_PORT:-8080}
for exe in "$HANDOFF" "$SERVER"; do
    if [ ! -x "$exe" ]; then
        echo "tour: $exe is missing: run \`cargo install --path . && cargo build --release --examples\`" >&2
        exit 2
    fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/handoff-tour.XXXXXX")
control=$dir/control.sock
supervisor=""
load=""
# On any exit, even a failed one: leave no process or file behind.
cleanup() {
    [ -n "$load" ] && kill "$load" 2>/dev/null
    [ -n "$supervisor" ] && kill "$supervisor" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# `$ command` then its output, as in a terminal.
show() {
    echo "\$ ${*/#"$HANDOFF"/handoff}"
    "$@"
}

# handoff's own log goes to a file, to keep the tour readable; the
# server's lines ("hello: pid ... serving") with it.
echo "\$ handoff run --listen http=tcp://127.0.0.1:$port --control $control -- ${SERVER#"$repo"/} &"
"$HANDOFF" run --listen "http=tcp://127.0.0.1:$port" --control "$control" -- "$SERVER" \
    >"$dir/handoff.log" 2>&1 &
supervisor=$!

# Wait until it serves: `status` answers once the control socket is up,
# and says generation 1 once the server said READY=1. At most 30 s.
serving=""
for _ in $(seq 300); do
    if "$HANDOFF" status --json --control "$control" 2>/dev/null | grep -q '"generation": 1,'; then
        serving=yes
        break
    fi
    if ! kill -0 "$supervisor" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$serving" ]; then
    echo "tour: handoff did not serve within 30 s; its log:" >&2
    cat "$dir/handoff.log" >&2
    exit 1
fi
# The real port, for TOUR_PORT=0.
addr=$("$HANDOFF" status --json --control "$control" |
    sed -n 's/.*"address": "\([^"]*\)".*/\1/p' | head -1)
url=http://$addr/

show curl -s "$url"

# The load: one request after another until told to stop (at most 10,000),
# each answer (one line) in answers.txt, FAILED for a request that failed.
echo
echo "# Restart twice under load: a curl loop runs before, during and after."
(
    for _ in $(seq 10000); do
        [ -e "$dir/stop-load" ] && break
        # A request cut short may leave a partial line: FAILED ends it.
        curl -sf --max-time 10 "$url" || echo FAILED
    done >"$dir/answers.txt"
) &
load=$!

# Waits until the load has made N answers (at most 30 s).
answers_reach() {
    for _ in $(seq 300); do
        [ "$(wc -l <"$dir/answers.txt")" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "tour: the load did not reach $1 answers within 30 s" >&2
    exit 1
}

answers_reach 50
show "$HANDOFF" restart --control "$control"
show "$HANDOFF" restart --control "$control"
# Some more answers after the second restart, then stop the load and wait
# for it (only for it: handoff keeps running).
answers_reach $(($(wc -l <"$dir/answers.txt") + 50))
touch "$dir/stop-load"
wait "$load"
load=""

total=$(wc -l <"$dir/answers.txt")
failed=$(grep -c 'FAILED$' "$dir/answers.txt" || true)
echo "requests: $total, failed: $failed; answered by:"
grep -v 'FAILED$' "$dir/answers.txt" | grep -o 'generation [0-9]*' | sort | uniq -c

echo
show curl -s "$url"
show "$HANDOFF" status --control "$control"
show "$HANDOFF" stop --control "$control"
supervisor=""

if [ "$failed" -ne 0 ]; then
    echo "tour: $failed of $total requests failed; handoff's log:" >&2
    cat "$dir/handoff.log" >&2
    exit 1
fi
