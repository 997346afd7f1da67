package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socket-warp/socket-warp/example/internal/stack"
)

// grace bounds every blocking step beyond its planned length, so that a stuck
// path fails its figure instead of hanging the run.
const grace = 30 * time.Second

func dialMode(ctx context.Context, p *path, mode byte, end time.Time) (conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := p.dial(dctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = c.SetDeadline(end.Add(grace))
	if _, err := c.Write([]byte{mode}); err != nil {
		c.Close()
		return nil, fmt.Errorf("write mode: %w", err)
	}
	return c, nil
}

// upload sends data for d and returns the bytes the far end counted and
// the time until its count arrived.
func upload(ctx context.Context, p *path, d time.Duration) (int64, time.Duration, error) {
	start := time.Now()
	c, err := dialMode(ctx, p, modeSink, start.Add(d))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, chunk)
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, fmt.Errorf("write: %w", err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return 0, 0, fmt.Errorf("close write: %w", err)
	}
	var n [8]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return 0, 0, fmt.Errorf("read the count: %w", err)
	}
	return int64(binary.BigEndian.Uint64(n[:])), time.Since(start), nil
}

// download has the far end send for d and returns what arrived and how long
// it took until EOF.
func download(ctx context.Context, p *path, d time.Duration) (int64, time.Duration, error) {
	start := time.Now()
	c, err := dialMode(ctx, p, modeGen, start.Add(d))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(d))); err != nil {
		return 0, 0, fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, chunk)
	var total int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, time.Since(start), nil
		}
		if err != nil {
			return total, 0, fmt.Errorf("read: %w", err)
		}
	}
}

type transfer func(context.Context, *path, time.Duration) (int64, time.Duration, error)

// parallel runs n transfers at once and returns the bytes moved per second
// of wall time.
func parallel(ctx context.Context, p *path, n int, d time.Duration, f transfer) (float64, error) {
	var (
		total atomic.Int64
		errs  = make([]error, n)
		wg    sync.WaitGroup
	)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			b, _, err := f(ctx, p, d)
			total.Add(b)
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}

// latency times iters round trips of 64 bytes over one connection, after a
// warm-up that is not counted.
func latency(ctx context.Context, p *path, iters int) ([]time.Duration, error) {
	const warmup = 200
	c, err := dialMode(ctx, p, modeEcho, time.Now().Add(time.Duration(iters)*10*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out, in := make([]byte, 64), make([]byte, 64)
	rtts := make([]time.Duration, 0, iters)
	for i := range warmup + iters {
		out[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if in[0] != out[0] {
			return nil, fmt.Errorf("echo out of step: got %d, want %d", in[0], out[0])
		}
		if i >= warmup {
			rtts = append(rtts, time.Since(t0))
		}
	}
	return rtts, nil
}

// connRate has workers connect, exchange 64 bytes, and close, over and
// over for d; it returns completed connections per second and the time
// from the dial to the first byte of each answer.
func connRate(ctx context.Context, p *path, workers int, d time.Duration) (float64, []time.Duration, error) {
	var (
		mu    sync.Mutex
		ttfbs []time.Duration
		errs  = make([]error, workers)
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			msg := make([]byte, 65)
			msg[0] = modeEcho
			in := make([]byte, 64)
			for time.Now().Before(end) {
				t0 := time.Now()
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, err := p.dial(dctx)
				cancel()
				if err != nil {
					errs[w] = fmt.Errorf("dial: %w", err)
					return
				}
				_ = c.SetDeadline(t0.Add(grace))
				_, err = c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, in[:1])
				}
				ttfb := time.Since(t0)
				if err == nil {
					_, err = io.ReadFull(c, in[1:])
				}
				c.Close()
				if err != nil {
					errs[w] = fmt.Errorf("echo: %w", err)
					return
				}
				mine = append(mine, ttfb)
			}
			mu.Lock()
			ttfbs = append(ttfbs, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, err
	}
	return float64(len(ttfbs)) / time.Since(start).Seconds(), ttfbs, nil
}

// held is the outcome of the idle-connection test on one path.
type held struct {
	Conns     int            `json:"conns"`
	Opened    int            `json:"opened"`
	Answering int            `json:"answering"`
	Errors    []string       `json:"errors,omitempty"`
	Procs     []*procHolding `json:"processes"`
}

type procHolding struct {
	Name           string  `json:"name"`
	RSSIdle        int64   `json:"rss_idle_bytes"`
	RSSHeld        int64   `json:"rss_held_bytes"`
	BytesPerConn   float64 `json:"rss_bytes_per_conn"`
	GoroutinesIdle int     `json:"goroutines_idle"`
	GoroutinesHeld int     `json:"goroutines_held"`
	GoroutinesPer  float64 `json:"goroutines_per_conn"`
	FDsHeld        int     `json:"fds_held"`
}

// holdIdle opens n connections on p, each exchanging 64 bytes, keeps them
// open and idle, measures the serving processes, then checks that every one
// still answers, and closes them.
// With profileDir set, holdIdle also saves a heap profile of each process
// while it holds the connections.
func holdIdle(ctx context.Context, p *path, n int, profileDir string) *held {
	h := &held{Conns: n}
	before := map[string]*procHolding{}
	for _, pr := range p.procs {
		ph := &procHolding{Name: pr.name}
		ph.RSSIdle, _, _ = stack.ReadStatus(pr.d.Pid())
		ph.GoroutinesIdle, _ = stack.Goroutines(pr.pprof)
		before[pr.name] = ph
		h.Procs = append(h.Procs, ph)
	}
	var errMu sync.Mutex
	note := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(h.Errors) < 10 {
			h.Errors = append(h.Errors, err.Error())
		}
	}
	conns := make([]conn, n)
	// Bounded concurrency: the accept queues are finite, and a flood of
	// dials measures the kernel rather than the daemons.
	forEach := func(f func(i int)) {
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 64 {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					f(i)
				}
			})
		}
		wg.Wait()
	}
	echo := func(c conn, i int) error {
		out := []byte(fmt.Sprintf("%064d", i))
		in := make([]byte, 64)
		if _, err := c.Write(out); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return err
		}
		if string(in) != string(out) {
			return fmt.Errorf("echo %q, want %q", in, out)
		}
		return nil
	}
	forEach(func(i int) {
		c, err := dialMode(ctx, p, modeEcho, time.Now().Add(5*time.Minute))
		if err == nil {
			if err = echo(c, i); err != nil {
				c.Close()
			}
		}
		if err != nil {
			note(fmt.Errorf("conn %d: %w", i, err))
			return
		}
		conns[i] = c
	})
	for _, c := range conns {
		if c != nil {
			h.Opened++
		}
	}
	// Let the daemons finish what the opening left behind (buffers return
	// to pools, goroutines of the handshake end) before measuring.
	time.Sleep(time.Second)
	for _, pr := range p.procs {
		ph := before[pr.name]
		ph.RSSHeld, _, _ = stack.ReadStatus(pr.d.Pid())
		ph.GoroutinesHeld, _ = stack.Goroutines(pr.pprof)
		ph.FDsHeld, _ = stack.CountFDs(pr.d.Pid())
		if profileDir != "" && pr.pprof != "" {
			file := filepath.Join(profileDir, fmt.Sprintf("%s-%s-idle-heap.pprof", p.name, pr.name))
			// The text form ends with runtime.MemStats: Stack shows what
			// goroutine stacks cost, which the profile itself leaves out.
			for url, f := range map[string]string{"/debug/pprof/heap": file, "/debug/pprof/heap?debug=1": file + ".txt"} {
				if err := fetchURL(ctx, "http://"+pr.pprof+url, f); err != nil {
					note(fmt.Errorf("heap profile of %s: %w", pr.name, err))
				}
			}
		}
		if h.Opened > 0 {
			ph.BytesPerConn = float64(ph.RSSHeld-ph.RSSIdle) / float64(h.Opened)
			ph.GoroutinesPer = float64(ph.GoroutinesHeld-ph.GoroutinesIdle) / float64(h.Opened)
		}
	}
	var answering atomic.Int64
	forEach(func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		if err := echo(c, n+i); err != nil {
			note(fmt.Errorf("conn %d after idling: %w", i, err))
			return
		}
		answering.Add(1)
	})
	h.Answering = int(answering.Load())
	forEach(func(i int) {
		if c := conns[i]; c != nil {
			c.Close()
		}
	})
	return h
}

// percentile of sorted durations, in microseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Microsecond)
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
