// Command sw-hello is a tiny HTTP server: the docker compose demo's target,
// reachable only on the "site" network. Every GET answers one line of text
// naming the host it runs on, so a page fetched through the tunnel shows
// where it came from.
//
//	sw-hello [-listen :8000] [-message "hello from the site network"]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	os.Exit(code)
}

// run serves until ctx ends; onListen, if set, is told the address.
func run(ctx context.Context, args []string, stderr io.Writer, onListen func(net.Addr)) int {
	fs := flag.NewFlagSet("sw-hello", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", ":8000", "`address` to listen on")
	message := fs.String("message", "hello from the site network", "first words of every answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	host, _ := os.Hostname()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "sw-hello: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "sw-hello: listening on %s\n", ln.Addr())
	if onListen != nil {
		onListen(ln.Addr())
	}
	srv := &http.Server{
		Handler:           handler(*message, host),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
		<-done
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "sw-hello: %v\n", err)
		return 1
	}
	return 0
}

func handler(message, host string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s (host %s, you are %s)\n", message, host, r.RemoteAddr)
	})
}
