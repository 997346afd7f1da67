#!/usr/bin/env bash
# make compose-test: bring docker-compose.yml up from the images of
# `make images`, fetch sw-hello's page through the tunnel on the host's
# loopback, check what the demo promises, and always tear everything down
# (volumes included), printing the containers' logs on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	echo "compose-test: neither 'docker compose' nor 'docker-compose' is installed" >&2
	exit 1
fi
# A project of its own, so that a demo the developer runs is left alone.
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-swcomposetest}
export SW_DEMO_API_PORT=${SW_DEMO_API_PORT:-28080}
export SW_DEMO_TUNNEL_PORT=${SW_DEMO_TUNNEL_PORT:-29000}
SW_API_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export SW_API_TOKEN
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
	step "${compose[*]} down -v"
	c down -v --remove-orphans >/dev/null 2>&1 || c down -v --remove-orphans || true
	echo "compose-test: $([ "$status" -eq 0 ] && echo OK || echo FAILED) in $(($(date +%s) - start))s"
	exit "$status"
}
trap cleanup EXIT

step "${compose[*]} up -d (project $COMPOSE_PROJECT_NAME)"
c up -d

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
code=$(curl -s -o /dev/null -w '%{http_code}' "$API/list")
[ "$code" = 401 ] || fail "GET /list without the token: HTTP $code, want 401"
list=$(curl -sf -H "Authorization: Bearer $SW_API_TOKEN" "$API/list")
echo "$list"
case "$list" in *'"uid":"swc-demo","port":9000,"connect_address":"sw-hello","connect_port":8000'*) ;;
*) fail "GET /list: $list" ;; esac

step "the listener has no route to the site network; the connector enrolled itself"
nets() { docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(container "$1")"; }
echo "sw-listener: $(nets sw-listener)"; echo "sw-connector: $(nets sw-connector)"; echo "sw-hello: $(nets sw-hello)"
case "$(nets sw-listener)" in *_site*) fail "sw-listener is on the site network" ;; esac
case "$(nets sw-hello)" in *_internet*) fail "sw-hello is on the internet network" ;; esac
c logs --no-color sw-connector | grep -q '"enrolled"\|enrolled' || fail "the connector did not log its enrollment"

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
