// Package metrics holds what both daemons share of their observability: a
// Prometheus registry of their own (never the global default, so that several
// daemons can run in one process, as the tests do), the /metrics, /healthz
// and /readyz handlers, and the small HTTP server that serves them on an
// address of their own (SWL_METRICS_ADDR, SWC_METRICS_ADDR).
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Namespace prefixes every metric name.
const Namespace = "socketwarp"

// NewRegistry returns a registry that already holds the Go runtime and
// process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus exposition formats. A collector that
// fails leaves its metrics out rather than failing the whole scrape.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Healthz answers 200 while the process serves HTTP at all.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz answers 200 when ready returns nil, else 503 with its error.
func Readyz(ready func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Mux routes /metrics, /healthz and /readyz; anything else is a JSON 404.
func Mux(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	mux.Handle("GET /healthz", Healthz())
	mux.Handle("GET /readyz", Readyz(ready))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no such path %s: try /metrics, /healthz or /readyz", r.URL.Path)})
	})
	return mux
}

// Server serves Mux on an address of its own. It has no authentication:
// bind it where only the scraper reaches.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// Listen binds addr (host:port) now, so that a taken port stops the daemon
// at start; setting names the setting in the error.
func Listen(setting, addr string, reg *prometheus.Registry, ready func() error, log *zap.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: listen for metrics: %w", setting, addr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		// Metrics name UIDs, ports and internal targets: say so once
		// where the operator looks, rather than refuse a common setup
		// (a scraper on another host, behind a firewall).
		log.Warn("metrics are served without authentication on a non-loopback address; restrict who can reach it",
			zap.String("setting", setting), zap.Stringer("addr", ln.Addr()))
	}
	return &Server{
		ln:  ln,
		log: log,
		srv: &http.Server{
			Handler:           Mux(reg, ready),
			ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          zap.NewStdLog(log.Named("http")),
		},
	}, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then shuts down, and returns when it has.
// A Server that never serves must be closed with Close.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("metrics listening", zap.Stringer("addr", s.ln.Addr()))
	shutDown := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutDown)
		shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = s.srv.Shutdown(shutCtx)
	})
	err := s.srv.Serve(s.ln)
	if stop() {
		// ctx has not ended: Serve failed on its own.
		return fmt.Errorf("serve metrics on %s: %w", s.ln.Addr(), err)
	}
	// Serve returns as soon as Shutdown begins; no handler may outlive
	// the caller.
	<-shutDown
	return nil
}

// Close releases the socket of a Server that is not serving.
func (s *Server) Close() error { return s.ln.Close() }
