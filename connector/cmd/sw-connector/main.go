// Command sw-connector dials out to sw-listener and serves its tunnels;
// `sw-connector enroll` gets its certificate from a SCEP server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/sighup"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "enroll" {
		os.Exit(enrollCommand(os.Args[2:], os.Stdout, os.Stderr))
	}
	cfg, err := connector.LoadConfig()
	if err != nil {
		fail(2, "configuration: %s", err)
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fail(2, "%s", err)
	}
	defer log.Sync()
	c, err := connector.New(cfg, log)
	if err != nil {
		fail(1, "%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once, mid-drain
	defer sighup.Handle(ctx, func() { _ = c.ReloadCertificates() })()
	if err := c.Run(ctx); err != nil {
		log.Error("stopped", logging.Reason(err.Error()))
		os.Exit(1)
	}
}

// fail prints one line: joined errors become "; "-separated.
func fail(code int, format string, err error) {
	fmt.Fprintf(os.Stderr, "sw-connector: "+format+"\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	os.Exit(code)
}
