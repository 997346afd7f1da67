// Command sw-listener accepts connectors over QUIC and opens tunnelled ports
// on request of its HTTP API.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener"
	"github.com/socket-warp/socket-warp/shared/cli"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/sighup"
)

const name = "sw-listener"

func main() {
	cmd := cli.Command{Name: name, Synopsis: "[--version | --help | check-config]", Run: run, Usage: usage, Check: checkConfig}
	if code := cmd.Main(os.Args[1:], os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: %s [--version | --help | check-config]

Without arguments it runs the listener, configured by the environment.

  check-config  load the configuration as the daemon would and check it and
                the certificates (expiry, key match, chain to SWL_CA_PATH,
                serverAuth, names); listens on nothing. Exit 0: ok, 1: problems
  --version     print the version and exit
  --help, -h    print this help and exit

Settings (environment variables):
`, name)
	cli.PrintSettings(w, cli.Settings(listener.Config{}), false)
}

func checkConfig() int {
	cfg, err := listener.LoadConfig()
	f := listener.CheckConfig(cfg)
	f.Problems = append(cli.ProblemsOf(err), f.Problems...)
	return cli.Report(os.Stdout, name, f)
}

func run() {
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
