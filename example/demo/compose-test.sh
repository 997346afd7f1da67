#!/usr/bin/env bash
# make compose-test: bring docker-compose.yml up from the images of
# `make images` the way the README does (make compose-up: the API token in
# .env, nothing in the shell), fetch sw-hello's page through the tunnel on
# the host's loopback, check what the demo promises, and always tear
# everything down (make compose-down, volumes included), printing the
# containers' logs on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Make picks the Compose command (v2 or v1): one place decides.
read -ra compose <<<"${COMPOSE:-}"
[ "${#compose[@]}" -gt 0 ] || { echo "compose-test: run it as make compose-test (COMPOSE is not set)" >&2; exit 1; }
MAKE=${MAKE:-make}
# A project of its own, so that a demo the developer runs is left alone.
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-swcomposetest}
export SW_DEMO_API_PORT=${SW_DEMO_API_PORT:-28080}
export SW_DEMO_TUNNEL_PORT=${SW_DEMO_TUNNEL_PORT:-29000}
# A fresh shell: the token comes from .env only.
unset SW_API_TOKEN
API=http://127.0.0.1:$SW_DEMO_API_PORT
PAGE=http://127.0.0.1:$SW_DEMO_TUNNEL_PORT/
TIMEOUT=${COMPOSE_TEST_TIMEOUT:-180}

c() { "${compose[@]}" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "compose-test: FAIL: $*" >&2; exit 1; }
container() { c ps -q "$1"; }

start=$(date +%s)
cleanup() {
	local status=$?
	if [ "$status" -ne 0 ]; then
		echo "--- compose-test failed; containers and logs follow ---"
		c ps -a || true
		c logs --no-color --timestamps || true
	fi
	step "make compose-down"
	"$MAKE" -s compose-down >/dev/null 2>&1 || "$MAKE" -s compose-down || true
	echo "compose-test: $([ "$status" -eq 0 ] && echo OK || echo FAILED) in $(($(date +%s) - start))s"
	exit "$status"
}
trap cleanup EXIT

step "without SW_API_TOKEN in the shell or .env, ps, logs and down still work"
noenv=$(mktemp)
for cmd in ps logs "down -v --remove-orphans"; do
	# shellcheck disable=SC2086 # cmd is words
	c --env-file "$noenv" $cmd >/dev/null 2>"$noenv.err" || {
		cat "$noenv.err" >&2
		rm -f "$noenv" "$noenv.err"
		fail "${compose[*]} $cmd fails without SW_API_TOKEN"
	}
	echo "${compose[*]} $cmd: OK"
done
rm -f "$noenv" "$noenv.err"

step "make compose-up (project $COMPOSE_PROJECT_NAME)"
had_token=$(grep -s '^SW_API_TOKEN=.' .env || true)
"$MAKE" -s compose-up
SW_API_TOKEN=$(sed -n 's/^SW_API_TOKEN=//p' .env | tail -n 1)
[ -n "$SW_API_TOKEN" ] || fail "no SW_API_TOKEN in .env"
if [ -z "$had_token" ]; then
	[ "$(stat -c %a .env)" = 600 ] || fail "make compose-up wrote .env with mode $(stat -c %a .env), want 600"
	echo "make compose-up wrote a token to .env, mode 600"
else
	[ "$had_token" = "SW_API_TOKEN=$SW_API_TOKEN" ] || fail "make compose-up changed the token in .env"
	echo "make compose-up kept the token already in .env"
fi

step "wait for sw-hello's page through the tunnel: curl $PAGE"
deadline=$(($(date +%s) + TIMEOUT))
until page=$(curl -sf --max-time 5 "$PAGE"); do
	[ "$(date +%s)" -lt "$deadline" ] || fail "no page on $PAGE after ${TIMEOUT}s"
	sleep 1
done
echo "$page"
case "$page" in "hello from the site network (host "*) ;; *) fail "unexpected page: $page" ;; esac
echo "page through the tunnel after $(($(date +%s) - start))s"

step "the one-shot sw-open exited 0"
id=$(container sw-open)
[ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")" = "exited 0" ] ||
	fail "sw-open: $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")"
docker logs "$id" 2>&1 | sed 's/^/  /'

step "the API answers on loopback with the token only"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$API/list")
[ "$code" = 401 ] || fail "GET /list without the token: HTTP $code, want 401"
list=$(curl -sf --max-time 5 -H "Authorization: Bearer $SW_API_TOKEN" "$API/list")
echo "$list"
case "$list" in *'"uid":"swc-demo","port":9000,"connect_address":"sw-hello","connect_port":8000'*) ;;
*) fail "GET /list: $list" ;; esac

step "with an empty token the listener refuses to start: its API is not loopback-only"
status=0
out=$(SW_API_TOKEN= c run --rm --no-deps -T sw-listener 2>&1) || status=$?
[ "$status" -ne 0 ] || fail "sw-listener ran with an empty SW_API_TOKEN"
echo "$out" | grep -F SWL_API_TOKEN | sed 's/^/  /' || fail "sw-listener's refusal does not name SWL_API_TOKEN: $out"

step "the listener has no route to the site network; the connector enrolled itself"
nets() { docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(container "$1")"; }
echo "sw-listener: $(nets sw-listener)"; echo "sw-connector: $(nets sw-connector)"; echo "sw-hello: $(nets sw-hello)"
case "$(nets sw-listener)" in *_site*) fail "sw-listener is on the site network" ;; esac
case "$(nets sw-hello)" in *_internet*) fail "sw-hello is on the internet network" ;; esac
# grep reads to the end: with -q it would stop early, and pipefail would take
# the logs command's SIGPIPE for a missing line.
c logs --no-color sw-connector | grep enrolled >/dev/null || fail "the connector did not log its enrollment"

step "no secret in any log"
secret=$(docker cp "$(container sw-connector):/etc/socket-warp/enroll.json" - | tar -xO | sed -n 's/.*"enroll_secret": *"\([^"]*\)".*/\1/p')
[ -n "$secret" ] || fail "could not read the enrollment secret back"
logs=$(c logs --no-color)
for s in "$secret" "$SW_API_TOKEN"; do
	case "$logs" in *"$s"*) fail "a secret appears in the logs" ;; esac
done
echo "neither the enrollment secret nor the API token appears in the logs"

step "images"
for i in sw-listener sw-connector sw-devca sw-hello sw-open; do
	img=${IMAGE_PREFIX:-socket-warp/}$i:${IMAGE_TAG:-dev}
	docker image inspect -f "{{.Size}} {{.Config.User}}" "$img" | awk -v n="$img" '{ printf "%-34s %5.1f MB  user %s\n", n, $1/1e6, $2 }'
done
