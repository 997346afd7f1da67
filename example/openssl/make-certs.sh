#!/usr/bin/env bash
# make-certs.sh OUTDIR [UID]
#
# Makes a small private PKI for socket-warp with nothing but openssl and
# example/server_csr.conf:
#
#   ca.key     ca.crt                  the CA both daemons trust (-ca / ca_cert)
#   server.key server.csr server.crt   sw-listener's certificate (serverAuth, SANs
#                                      from [alt_names] in server_csr.conf)
#   client.key client.csr client.crt   one sw-connector's certificate (clientAuth);
#                                      its CN is the connector's UID (default swc-1)
#
# Keys are EC P-256 in PKCS#8 PEM ("PRIVATE KEY") and are made mode 0600.
# Every openssl command is printed before it runs, so the output is the
# step-by-step recipe. Edit [alt_names] in server_csr.conf first if the
# connectors reach the listener by a name other than localhost/127.0.0.1.
# The script refuses to overwrite files that already exist in OUTDIR.
set -euo pipefail

usage() {
	echo "usage: $0 OUTDIR [UID]" >&2
	echo "  OUTDIR  directory to write ca.*, server.* and client.* into (created if missing)" >&2
	echo "  UID     the connector's UID, the CN of client.crt (default swc-1)" >&2
	exit 2
}
die() {
	echo "make-certs.sh: $*" >&2
	exit 1
}

# run prints a command, quoted so that it can be pasted into a shell, then runs it.
run() {
	local out="+" a
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
			out+=" $a"
		else
			out+=" '${a//\'/\'\\\'\'}'"
		fi
	done
	printf '%s\n' "$out"
	"$@"
}

[[ $# -ge 1 && $# -le 2 && -n $1 ]] || usage
outdir=$1
uid=${2:-swc-1}

# The UID goes into -subj, where '/' and '=' are separators; it must also be a
# valid CN (at most 64 characters).
[[ $uid =~ ^[A-Za-z0-9._@-]{1,64}$ ]] ||
	die "UID \"$uid\" must be 1-64 characters from A-Z a-z 0-9 . _ @ -"

command -v openssl >/dev/null 2>&1 ||
	die "openssl not found on PATH; install it (e.g. apt-get install openssl, dnf install openssl, brew install openssl)"

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
conf=$(cd -- "$script_dir/.." && pwd)/server_csr.conf
[[ -r $conf ]] || die "cannot read $conf"

mkdir -p -- "$outdir"
cd -- "$outdir"
for f in ca.key ca.crt server.key server.csr server.crt client.key client.csr client.crt; do
	[[ ! -e $f ]] || die "$outdir/$f already exists; remove it or choose another OUTDIR"
done

days_ca=3650
days_leaf=365

# genkey makes an EC P-256 private key that only its owner can read: the
# umask covers the moment between creation and the chmod.
genkey() {
	(
		umask 077
		run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
	)
	run chmod 600 "$1"
}

echo "# In $(pwd), with $conf"

echo "# 1. The CA: a key and a self-signed certificate."
genkey ca.key
run openssl req -new -x509 -config "$conf" -extensions v3_ca -key ca.key \
	-subj "/O=socket-warp/CN=socket-warp CA" -days "$days_ca" -sha256 -out ca.crt

echo "# 2. sw-listener: a key, a request (subject and SANs from the config), a certificate signed by the CA."
genkey server.key
run openssl req -new -config "$conf" -key server.key -out server.csr
run openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
	-days "$days_leaf" -sha256 -extfile "$conf" -extensions v3_req -out server.crt

echo "# 3. sw-connector $uid: a key, a request with CN=$uid, a certificate signed by the CA."
genkey client.key
run openssl req -new -config "$conf" -reqexts v3_client -key client.key \
	-subj "/O=socket-warp/CN=$uid" -out client.csr
run openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
	-days "$days_leaf" -sha256 -extfile "$conf" -extensions v3_client -out client.crt

echo "# 4. Check that both leaves chain to the CA."
run openssl verify -CAfile ca.crt server.crt client.crt
