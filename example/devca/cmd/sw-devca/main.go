// Command sw-devca runs socket-warp's development SCEP certificate authority.
//
//	sw-devca init   --state FILE [--dns-name N]... [--ip IP]... [--out DIR]
//	sw-devca bootstrap --state FILE [--out DIR] [--client UID --enroll-file FILE --scep-url URL]
//	sw-devca serve  --state FILE [--addr 127.0.0.1:8443] [--admin-addr 127.0.0.1:8444] [--tls]
//	sw-devca client add UID [--attr KEY=VALUE]...
//	sw-devca secret create UID [--pending-period 1h] [--available-period 24h]
//	sw-devca revoke UID
//
// init writes the state file and, for sw-listener, ca.crt, server.crt and
// server.key (0600) into --out. bootstrap does the same when the state file
// does not exist yet and, with --client, registers the client and writes a
// one-time secret for its connector; it can be run again and again (a
// container's start). serve owns the state file; client, secret and
// revoke are clients of a running serve's admin API (--admin-url, default
// http://127.0.0.1:8444) and never touch the file themselves. secret create
// prints only the secret on stdout, for scripts. Run "sw-devca help" for all
// flags and environment variables.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}
