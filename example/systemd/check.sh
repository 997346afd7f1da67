#!/usr/bin/env bash
# make systemd-check: the units of example/systemd pass `systemd-analyze
# verify` (with ExecStart pointed at bin/, the only difference) and score
# "OK" or better in `systemd-analyze security`.
#
# make systemd-boot-test (SYSTEMD_BOOT=1): besides, boots systemd as PID 1 in
# a container made from Debian packages (debootstrap, then docker import;
# built once and kept as socket-warp/systemd-test:bookworm) and runs the
# real thing under the units as written: sw-listener.service and
# sw-connector.service, the connector enrolling itself from the CA (sw-devca)
# and tunnelling to sw-hello; then kills the connector and checks that
# Restart=always brings the tunnel back.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
units=(sw-connector sw-listener)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "systemd-check: FAIL: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (Debian: apt-get install systemd)"
tmp=$(mktemp -d)
cid=
cleanup() {
	local status=$?
	if [ -n "$cid" ]; then
		if [ "$status" -ne 0 ]; then
			echo "--- journal of the units ---"
			docker exec "$cid" journalctl --no-pager -o short-monotonic -u sw-connector -u sw-listener -u sw-devca -u sw-hello | tail -n 60 || true
		fi
		docker rm -f "$cid" >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT

step "systemd-analyze verify"
for u in "${units[@]}"; do
	sed "s|^ExecStart=/usr/local/bin/|ExecStart=$PWD/$BIN/|" "example/systemd/$u.service" >"$tmp/$u.service"
done
systemd-analyze verify --man=no "$tmp"/*.service
echo "verify: OK"

step "systemd-analyze security (exposure, 0 = locked down, 10 = none)"
got=
for u in "${units[@]}"; do
	# --threshold=20 (of 100): fail if a unit scores worse than 2.0.
	line=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/$u.service" | tail -n 1)
	echo "$line"
	got+="$line"$'\n'
done
# README.md quotes these lines (the block after <!-- check: systemd-security -->):
# they must be what systemd-analyze says, not what it said once.
want=$(awk '/<!-- check: systemd-security -->/ { m = 1; next } m && /^```/ { if (b) exit; b = 1; next } b' README.md)
[ "${got%$'\n'}" = "$want" ] || fail "README.md (<!-- check: systemd-security -->) shows
$want
but systemd-analyze $(systemd-analyze --version | head -n 1 | cut -d' ' -f2) says
${got%$'\n'}
update the README"

[ "${SYSTEMD_BOOT:-0}" = 1 ] || exit 0

image=socket-warp/systemd-test:bookworm
if ! docker image inspect "$image" >/dev/null 2>&1; then
	step "build $image from Debian packages (debootstrap, once)"
	command -v debootstrap >/dev/null || fail "debootstrap is missing (Debian: apt-get install debootstrap)"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$tmp/rootfs" \
		"${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$tmp/debootstrap.log"; fail "debootstrap"; }
	tar -C "$tmp/rootfs" -c . | docker import - "$image" >/dev/null
	rm -rf "$tmp/rootfs"
fi

step "boot systemd as PID 1"
# cgroup v1 hosts need the host's cgroup tree, writable; on cgroup v2 the
# container's own namespace is enough.
cgroup=(--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw)
[ -f /sys/fs/cgroup/cgroup.controllers ] && cgroup=(--cgroupns=private)
cid=$(docker run -d -t -e container=docker --cap-add SYS_ADMIN "${cgroup[@]}" \
	--tmpfs /run --tmpfs /run/lock --tmpfs /tmp "$image" /lib/systemd/systemd)
inside() { docker exec "$cid" "$@"; }
for _ in $(seq 60); do
	state=$(inside systemctl is-system-running 2>/dev/null || true)
	case "$state" in running | degraded) break ;; esac
	sleep 1
done
echo "system: $state"

step "install the binaries and the units as written"
for b in sw-listener sw-connector sw-devca sw-hello sw-open; do docker cp "$BIN/$b" "$cid:/usr/local/bin/$b"; done
for f in sw-listener.service sw-connector.service; do docker cp "example/systemd/$f" "$cid:/etc/systemd/system/$f"; done
docker cp example/systemd/sw-listener.sysusers "$cid:/usr/lib/sysusers.d/sw-listener.conf"
inside systemd-sysusers
inside systemctl daemon-reload

step "the CA: bootstrap (listener files, client swc-1 with a secret), then serve"
inside mkdir -p /etc/socket-warp
inside /usr/local/bin/sw-devca bootstrap --state /var/lib/sw-devca/devca.json --out /etc/socket-warp \
	--ca-key-bits 2048 --dns-name localhost --client swc-1 --enroll-file /root/enroll.json \
	--scep-url http://127.0.0.1:8443/scep
inside systemd-run --quiet --unit sw-devca /usr/local/bin/sw-devca serve --state /var/lib/sw-devca/devca.json --admin-addr ''
inside systemd-run --quiet --unit sw-hello -p DynamicUser=yes /usr/local/bin/sw-hello -listen 127.0.0.1:8000 -message 'hello from systemd'

step "sw-listener.service"
inside chgrp sw-listener /etc/socket-warp/server.key
inside chmod 0640 /etc/socket-warp/server.key
sed -e 's|^#SWL_SCEP_URL=.*|SWL_SCEP_URL=http://127.0.0.1:8443|' example/systemd/sw-listener.env >"$tmp/sw-listener.env"
docker cp "$tmp/sw-listener.env" "$cid:/etc/socket-warp/sw-listener.env"
inside chmod 0600 /etc/socket-warp/sw-listener.env
inside systemctl start sw-listener

step "sw-connector.service: enrolls itself on first start, then connects"
val() { inside sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" /root/enroll.json; }
sed -e "s|^SWC_SERVER_NAME=.*|SWC_SERVER_NAME=localhost|" \
	-e "s|^SWC_SCEP_URL=.*|SWC_SCEP_URL=$(val scep_url)|" \
	-e "s|^SWC_UID=.*|SWC_UID=$(val uid)|" \
	-e "s|^SWC_ENROLL_SECRET=.*|SWC_ENROLL_SECRET=$(val enroll_secret)|" \
	-e "s|^SWC_CA_FINGERPRINT=.*|SWC_CA_FINGERPRINT=$(val ca_fingerprint)|" \
	-e "s|^SWC_ALLOW=.*|SWC_ALLOW=127.0.0.1:8000|" \
	example/systemd/sw-connector.env >"$tmp/sw-connector.env"
docker cp "$tmp/sw-connector.env" "$cid:/etc/socket-warp/sw-connector.env"
inside chmod 0600 /etc/socket-warp/sw-connector.env
inside systemctl enable --quiet --now sw-connector

step "open port 9000 to sw-hello and fetch its page through the tunnel"
inside /usr/local/bin/sw-open -api http://127.0.0.1:8080 -uid swc-1 -port 9000 -connect 127.0.0.1:8000 -timeout 60s
fetch() { inside bash -c 'exec 3<>/dev/tcp/127.0.0.1/9000 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && timeout 10 cat <&3' | tail -n 1; }
page=$(fetch)
echo "$page"
case "$page" in "hello from systemd"*) ;; *) fail "page: $page" ;; esac

step "what systemd made of the units"
inside systemctl show -p ActiveState -p User -p DynamicUser -p NRestarts -p MainPID sw-connector
inside ls -ln /var/lib/private/sw-connector
inside ls -ln /var/lib/sw-listener
[ "$(inside stat -c %a /var/lib/private/sw-connector/client.key)" = 600 ] || fail "client.key is not 0600"
pid=$(inside systemctl show -p MainPID --value sw-connector)
uid=$(inside stat -c %u "/proc/$pid")
[ "$uid" != 0 ] || fail "sw-connector runs as root"
inside grep -E '^(NoNewPrivs|CapEff|CapBnd)' "/proc/$pid/status"
[ "$(inside awk '/^NoNewPrivs/ {print $2}' "/proc/$pid/status")" = 1 ] || fail "NoNewPrivileges is not in effect"
inside systemctl show -p User -p NRestarts sw-listener

step "Restart=always: SIGKILL the connector; it comes back and the tunnel works again"
inside systemctl kill --signal=SIGKILL sw-connector
for _ in $(seq 60); do
	[ "$(inside systemctl show -p NRestarts --value sw-connector)" -ge 1 ] &&
		[ "$(inside systemctl is-active sw-connector)" = active ] && page=$(fetch 2>/dev/null) &&
		case "$page" in "hello from systemd"*) true ;; *) false ;; esac && break
	sleep 1
done
inside systemctl show -p NRestarts -p MainPID sw-connector
case "$page" in "hello from systemd"*) ;; *) fail "no page after the restart: $page" ;; esac
inside journalctl --no-pager -o cat -u sw-connector | grep -E 'enrolled|connected' | head -n 4
if inside journalctl --no-pager -o cat | grep -qF "$(val enroll_secret)"; then fail "the enrollment secret is in the journal"; fi
echo "systemd boot test: OK"
