#!/usr/bin/env bash
# The local demo: a throw-away CA, a target echo service, sw-listener and
# sw-connector on this machine; opens a port with curl, sends text through
# the tunnel, prints the reply, and stops everything. Run it as `make demo`.
set -euo pipefail

BIN=${BIN:-bin}
UID_NAME=${DEMO_UID:-demo-connector}
QUIC_PORT=${DEMO_QUIC_PORT:-11443}
API_PORT=${DEMO_API_PORT:-18080}
TUNNEL_PORT=${DEMO_TUNNEL_PORT:-19000}
ECHO_PORT=${DEMO_ECHO_PORT:-17000}
API=http://127.0.0.1:$API_PORT

work=$(mktemp -d "${TMPDIR:-/tmp}/socket-warp-demo.XXXXXX")
# Every curl gives up: a port held by something that never answers would
# otherwise keep the demo waiting for ever.
curl() { command curl --connect-timeout 2 --max-time 5 "$@"; }
pids=() names=()
cleanup() {
	local status=$?
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ "$status" -ne 0 ]; then
		echo "--- demo failed; daemon logs follow ---"
		tail -n 20 "$work"/*.log 2>/dev/null || true
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo: FAIL: $*" >&2; exit 1; }

# cause NAME: the line of NAME's log that says why it stopped — its one-line
# start error, an ERROR/FATAL entry or a panic — else its last line.
cause() {
	local log=$work/$1.log line t=$'\t'
	line=$(grep -E "^($1: |panic: )|$t(ERROR|FATAL|DPANIC)$t" "$log" | tail -n 1 || true)
	[ -n "$line" ] || line=$(tail -n 1 "$log")
	printf '%s' "${line:-(nothing in $log)}"
}

# run NAME COMMAND...: start a daemon in the background, its stderr in
# $work/NAME.log.
run() {
	local name=$1
	shift
	"$@" 2>"$work/$name.log" &
	pids+=($!) names+=("$name")
}

# alive: every daemon started is still running; the first that is not
# stops the demo with its own reason, before anything else is said.
alive() {
	local i status
	for i in "${!pids[@]}"; do
		kill -0 "${pids[$i]}" 2>/dev/null && continue
		status=0
		wait "${pids[$i]}" || status=$?
		fail "${names[$i]} exited (status $status): $(cause "${names[$i]}")"
	done
}

# ready NAME TEXT: wait until NAME logs TEXT, failing as soon as a daemon dies.
ready() {
	local i
	for i in $(seq 1 300); do
		alive
		grep -qF "$2" "$work/$1.log" && return
		sleep 0.1
	done
	alive
	fail "$1 did not log \"$2\" within 30 s; its last line: $(cause "$1")"
}

step "1. a throw-away CA, a listener certificate and a connector certificate (uid $UID_NAME)"
"$BIN/sw-devcerts" -out "$work/pki" -uid "$UID_NAME"

step "2. the target: an echo service on 127.0.0.1:$ECHO_PORT (only the connector talks to it)"
run sw-echo "$BIN/sw-echo" -listen "127.0.0.1:$ECHO_PORT"
ready sw-echo "listening on"

step "3. sw-listener: QUIC on udp/$QUIC_PORT, API on 127.0.0.1:$API_PORT"
run sw-listener env SWL_CERT_PATH="$work/pki/server.crt" SWL_KEY_PATH="$work/pki/server.key" SWL_CA_PATH="$work/pki/ca.crt" \
	SWL_ADDRS=127.0.0.1 SWL_PORT="$QUIC_PORT" APIS_PORT="$API_PORT" SWL_OPEN_ADDRS=127.0.0.1 SWL_STATE_PATH="$work/state.db" \
	"$BIN/sw-listener"
ready sw-listener "api listening"

step "4. sw-connector: dials out to the listener with its client certificate"
cat >"$work/settings.json" <<JSON
{
  "client_cert_path": "$work/pki/client.crt",
  "client_key_path": "$work/pki/client.key",
  "ca_cert_path": "$work/pki/ca.crt",
  "server_name": "localhost",
  "service_port": $QUIC_PORT
}
JSON
cat "$work/settings.json"
run sw-connector env SWC_SETTINGS="$work/settings.json" "$BIN/sw-connector"

step "5. open port $TUNNEL_PORT through the connector to 127.0.0.1:$ECHO_PORT"
body="{\"uid\":\"$UID_NAME\",\"port\":$TUNNEL_PORT,\"connect_address\":\"127.0.0.1\",\"connect_port\":$ECHO_PORT}"
echo "curl -X POST $API/open -H 'Content-Type: application/json' -d '$body'"
# The connector needs a moment to connect; /open answers 404 until it has.
code=000
for i in $(seq 1 100); do
	alive
	code=$(curl -s -o "$work/open.json" -w '%{http_code}' -X POST "$API/open" -H 'Content-Type: application/json' -d "$body" || true)
	[ "$code" = 200 ] && break
	sleep 0.1
done
alive
case "$code" in
200) cat "$work/open.json"; echo ;;
000) fail "the API at $API did not answer; sw-listener's last line: $(cause sw-listener)" ;;
404) fail "the connector did not connect (HTTP 404); its last line: $(cause sw-connector)" ;;
*) fail "open failed with HTTP $code: $(cat "$work/open.json" 2>/dev/null)" ;;
esac
echo "curl $API/list"
curl -s "$API/list" || { alive; fail "GET /list: no answer from $API"; }
echo

step "6. send text to 127.0.0.1:$TUNNEL_PORT; it crosses the tunnel to the echo service and back"
message="hello through socket-warp at $(date +%T)"
exec 3<>"/dev/tcp/127.0.0.1/$TUNNEL_PORT"
printf '%s\n' "$message" >&3
IFS= read -r -t 10 reply <&3 || true
exec 3>&-
echo "sent:  $message"
echo "reply: $reply"
[ "$reply" = "$message" ] || { alive; fail "the reply does not match"; }

step "7. close the port and stop everything"
curl -s -X DELETE "$API/close" -H 'Content-Type: application/json' -d "{\"port\":$TUNNEL_PORT}" ||
	{ alive; fail "DELETE /close: no answer from $API"; }
echo
echo "listener log:"
sed 's/^/  /' "$work/sw-listener.log"
echo
echo "demo OK"
