package main

import (
	"context"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// The target's three modes, driven by the client code the benchmark uses,
// over real loopback TCP.
func TestTargetModes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	port := testutil.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	served := make(chan error, 1)
	go func() { served <- runTarget(ctx, addr) }()
	defer func() {
		cancel()
		<-served
	}()
	p := tcpPath("direct", "", addr)
	testutil.Eventually(t, "the target accepts", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	n, el, err := upload(ctx, p, 50*time.Millisecond)
	if err != nil || n <= 0 || el <= 0 {
		t.Fatalf("upload: %d bytes in %s, %v", n, el, err)
	}
	n, el, err = download(ctx, p, 50*time.Millisecond)
	if err != nil || n <= 0 || el <= 0 {
		t.Fatalf("download: %d bytes in %s, %v", n, el, err)
	}
	rtts, err := latency(ctx, p, 10)
	if err != nil || len(rtts) != 10 {
		t.Fatalf("latency: %d round trips, %v", len(rtts), err)
	}
	rate, ttfb, err := connRate(ctx, p, 2, 50*time.Millisecond)
	if err != nil || rate <= 0 || len(ttfb) == 0 {
		t.Fatalf("connRate: %g/s, %d samples, %v", rate, len(ttfb), err)
	}
	// No process to measure: only the connections count.
	if h := holdIdle(ctx, p, 20, ""); h.Opened != 20 || h.Answering != 20 || len(h.Errors) > 0 {
		t.Fatalf("holdIdle: %+v", h)
	}
}

// The targets are computed from the medians as the issue states them.
func TestTargets(t *testing.T) {
	r := newReport(&options{}, nil)
	r.paths = []string{"direct", "quic", "tunnel"}
	for _, v := range []struct {
		key  string
		vals [3]float64 // direct, quic, tunnel
	}{
		{"bulk_up", [3]float64{1000, 400, 370}},    // 0.925: met
		{"bulk_down", [3]float64{1000, 400, 300}},  // 0.75: missed
		{"lat_p50", [3]float64{10, 40, 70}},        // budget 60 × 1.2 = 72: met
		{"lat_p99", [3]float64{50, 100, 300}},      // budget 200 × 1.4 = 280: missed
		{"conn_seq", [3]float64{8000, 4000, 1700}}, // budget 2000 × 0.8 = 1600: met
		{"conn_c32", [3]float64{8000, 4000, 1000}},
	} {
		for i, p := range r.paths {
			for _, x := range []float64{v.vals[i] * 2, v.vals[i], v.vals[i] / 2} { // median is the middle
				r.add(v.key, v.key, "", true, p, x)
			}
		}
	}
	r.Held["tunnel"] = &held{Conns: 10, Opened: 10, Answering: 10, Procs: []*procHolding{
		{Name: "sw-listener", BytesPerConn: 16 << 10}, {Name: "sw-connector", BytesPerConn: 17 << 10}}}
	r.finish()
	want := []bool{true, false, true, false, true, false, true, true, false}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for i, tg := range r.Targets {
		if tg.Met != want[i] {
			t.Errorf("%s: got %.3f, met %v, want met %v", tg.What, tg.Got, tg.Met, want[i])
		}
	}
	if got := r.byKey["bulk_up"].ToQUIC["tunnel"]; math.Abs(got-0.925) > 1e-9 {
		t.Errorf("bulk_up tunnel/quic = %g, want 0.925", got)
	}
	if got := r.byKey["bulk_up"].ToDirect["quic"]; math.Abs(got-0.4) > 1e-9 {
		t.Errorf("bulk_up quic/direct = %g, want 0.4", got)
	}
}
