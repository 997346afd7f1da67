// Command sw-listener accepts connectors over QUIC and opens tunnelled ports
// on request of its HTTP API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/sighup"
)

func main() {
	cfg, err := listener.LoadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sw-listener: configuration: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(2)
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sw-listener: %v\n", err)
		os.Exit(2)
	}
	defer log.Sync()
	l, err := listener.New(cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sw-listener: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once, mid-drain
	defer sighup.Handle(ctx, func() { _ = l.ReloadCertificates() })()
	if err := l.Run(ctx); err != nil {
		log.Error("stopped", zap.Error(err))
		os.Exit(1)
	}
}
