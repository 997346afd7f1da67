// Command sw-connector dials out to sw-listener and serves its tunnels;
// `sw-connector enroll` gets its certificate from a SCEP server.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/shared/cli"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/sighup"
)

const name = "sw-connector"

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "enroll" {
		os.Exit(enrollCommand(args[1:], os.Stdout, os.Stderr))
	}
	cmd := cli.Command{Name: name, Synopsis: "[--version | --help | check-config | enroll ...]", Run: run, Usage: usage, Check: checkConfig}
	if code := cmd.Main(args, os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: %s [--version | --help | check-config | enroll ...]

Without arguments it runs the connector, configured by the settings file
(SWC_SETTINGS, default %s; optional when the environment supplies
everything) and the environment, which overrides every key of the file.

  check-config  load the configuration as the daemon would and check it and
                the certificates (expiry, key match, chain to ca_cert_path,
                clientAuth); dials nothing. Exit 0: ok, 1: problems
  enroll        get a certificate from a SCEP server once and exit
                (sw-connector enroll --help)
  --version     print the version and exit
  --help, -h    print this help and exit

Settings:
`, name, connector.DefaultSettingsPath)
	settings := append([]cli.Setting{{Env: "SWC_SETTINGS", Default: connector.DefaultSettingsPath, Desc: "path of the settings file"}},
		cli.Settings(connector.Defaults())...)
	cli.PrintSettings(w, settings, true)
}

func checkConfig() int {
	cfg, err := connector.LoadConfig()
	f := connector.CheckConfig(cfg)
	f.Problems = append(cli.ProblemsOf(err), f.Problems...)
	return cli.Report(os.Stdout, name, f)
}

func run() {
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
	defer sighup.Handle(ctx, func() { _ = c.Reload() })()
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
