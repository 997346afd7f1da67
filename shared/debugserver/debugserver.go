// Package debugserver is the daemons' opt-in profiling endpoint: Go's
// net/http/pprof handlers (goroutine counts, heap, CPU profiles) on a
// loopback address, for benchmarks and for looking at a live daemon.
//
// It is off unless an address is configured, and it refuses any address
// that is not loopback: profiles show internals (and a CPU profile costs
// CPU), so they are for whoever is on the machine.
package debugserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/zap"
)

// CheckAddr accepts "" (off) and host:port with a loopback IP or
// "localhost" as the host.
func CheckAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", addr)
	}
	return nil
}

// Server serves the pprof handlers on its own listener.
type Server struct {
	ln  net.Listener
	log *zap.Logger
}

// Listen binds addr, so that a taken port stops the daemon at start.
// Run serves; Close releases the socket when Run is never called.
func Listen(addr string, log *zap.Logger) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for pprof on tcp %s: %w", addr, err)
	}
	// "localhost" is whatever the resolver says: check what was bound.
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("listen for pprof on tcp %s: bound %s, which is not a loopback address", addr, ln.Addr())
	}
	return &Server{ln: ln, log: log}, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the socket of a server that is not running.
func (s *Server) Close() error { return s.ln.Close() }

// Run serves until ctx ends. It returns when every request has: a CPU
// profile in progress sees ctx end and stops early.
func (s *Server) Run(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: a CPU profile or trace answers after the
		// seconds it was asked to record.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    zap.NewStdLog(s.log.Named("pprof")),
	}
	s.log.Info("pprof listening", zap.Stringer("addr", s.ln.Addr()))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve pprof on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	// The handlers' contexts derive from ctx, so they are ending already;
	// Shutdown waits for them, Close cuts whatever does not.
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve pprof on %s: %w", s.ln.Addr(), err)
	}
	return nil
}
