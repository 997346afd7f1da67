// Command soak is the soak test of the built daemons: it runs sw-listener and
// sw-connector as real processes on loopback with a throw-away PKI, opens one
// port towards an in-process echo target, and drives many concurrent
// tunnelled connections that exchange checksummed data for a fixed time.
// Then it closes them all and checks that the daemons come back to their
// baseline.
//
//	go run ./example/soak -conns 1000 -duration 60s   # make soak
//	go run ./example/soak -conns 100 -duration 10s    # make soak-quick
//
// What is measured on each daemon, from /proc (Linux only):
//
//   - open file descriptors (/proc/PID/fd): every tunnelled connection holds a
//     TCP socket in the daemon that serves it.
//   - goroutines, from each daemon's opt-in pprof endpoint (SWL_PPROF_ADDR,
//     SWC_PPROF_ADDR on loopback, otherwise idle): every tunnel runs two in
//     each daemon.
//   - RSS (VmRSS in /proc/PID/status) before, at its peak, right after the
//     close, and once settled. The daemons give memory back once their load
//     falls (shared/memtrim), within seconds; RSS is not expected to return
//     to the baseline exactly (the relay keeps a bounded set of free buffers,
//     and the heap keeps some headroom), so the soak waits up to -rss-wait
//     (30 s) and fails when RSS stays more than 32 MiB above the baseline.
//   - OS threads (Threads in /proc/PID/status), for information.
//
// It exits non-zero on any corruption, any connection error, descriptors (+10)
// or goroutines (+5) not back to the baseline within 30 s, RSS still more than 32 MiB above
// the baseline after -rss-wait, or a daemon that does not exit 0 on SIGTERM. The figures are
// printed as a table and written to soak.json.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/socket-warp/socket-warp/example/internal/stack"
)

const (
	maxChunk     = 64 << 10
	fdTolerance  = 10
	gorTolerance = 5
	rssTolerance = 32 << 20
	settleWait   = 30 * time.Second
	uid          = "swc-soak"
)

func main() {
	conns := flag.Int("conns", 1000, "concurrent tunnelled connections")
	duration := flag.Duration("duration", 60*time.Second, "how long the connections exchange data")
	binDir := flag.String("bin", "bin", "directory holding sw-listener and sw-connector (built with go build when missing)")
	rssWait := flag.Duration("rss-wait", 30*time.Second, "how long RSS may take to come back within 32 MiB of the baseline after the close")
	out := flag.String("out", "soak.json", "where the JSON report is written")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, *conns, *duration, *rssWait, *binDir)
	if rep != nil {
		rep.print(os.Stdout)
		if data, jerr := json.MarshalIndent(rep, "", "  "); jerr == nil {
			if werr := os.WriteFile(*out, append(data, '\n'), 0o644); werr != nil {
				fmt.Fprintf(os.Stderr, "soak: %v\n", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	if !rep.Pass {
		os.Exit(1)
	}
}

// report is what soak.json holds.
type report struct {
	Conns       int           `json:"conns"`
	Duration    string        `json:"duration"`
	Elapsed     string        `json:"elapsed"`
	Bytes       int64         `json:"bytes_echoed"`
	RoundTrips  int64         `json:"round_trips"`
	MiBPerSec   float64       `json:"mib_per_s"`
	Corruptions int64         `json:"corruptions"`
	Errors      int64         `json:"errors"`
	ErrorSample []string      `json:"error_sample,omitempty"`
	Daemons     []*daemonStat `json:"daemons"`
	Failures    []string      `json:"failures,omitempty"`
	Pass        bool          `json:"pass"`
	Measured    string        `json:"measured"`
}

type daemonStat struct {
	Name         string `json:"name"`
	FDsBaseline  int    `json:"fds_baseline"`
	FDsPeak      int    `json:"fds_peak"`
	FDsAfter     int    `json:"fds_after"`
	SettledIn    string `json:"fds_settled_in"`
	RSSBaseline  int64  `json:"rss_baseline_bytes"`
	RSSPeak      int64  `json:"rss_peak_bytes"`
	RSSClosed    int64  `json:"rss_at_close_bytes"`
	RSSAfter     int64  `json:"rss_after_bytes"`
	RSSSettledIn string `json:"rss_settled_in"`
	ThreadsBase  int    `json:"threads_baseline"`
	ThreadsPeak  int    `json:"threads_peak"`
	ThreadsAfter int    `json:"threads_after"`
	GorBaseline  int    `json:"goroutines_baseline"`
	GorPeak      int    `json:"goroutines_peak"`
	GorAfter     int    `json:"goroutines_after"`
	ExitCode     int    `json:"exit_code"`
}

func (r *report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func (r *report) print(w io.Writer) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "\nsoak: %d connections for %s (elapsed %s)\n", r.Conns, r.Duration, r.Elapsed)
	fmt.Fprintf(w, "  echoed %s in %d round trips (%.1f MiB/s), corruptions %d, errors %d\n",
		mib(r.Bytes), r.RoundTrips, r.MiBPerSec, r.Corruptions, r.Errors)
	for _, e := range r.ErrorSample {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "daemon\tfds base\tfds peak\tfds after\tgoroutines b/p/a\tsettled in\tRSS base\tRSS peak\tRSS at close\tRSS after\tsettled in\tthreads b/p/a\texit\t")
	for _, d := range r.Daemons {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d/%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d/%d\t%d\t\n", d.Name,
			d.FDsBaseline, d.FDsPeak, d.FDsAfter, d.GorBaseline, d.GorPeak, d.GorAfter, d.SettledIn,
			mib(d.RSSBaseline), mib(d.RSSPeak), mib(d.RSSClosed), mib(d.RSSAfter), d.RSSSettledIn,
			d.ThreadsBase, d.ThreadsPeak, d.ThreadsAfter, d.ExitCode)
	}
	tw.Flush()
	fmt.Fprintf(w, "  measured: %s\n", r.Measured)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAIL: %s\n", f)
	}
	if r.Pass {
		fmt.Fprintln(w, "  PASS")
	}
}

func run(ctx context.Context, nConns int, duration, rssWait time.Duration, binDir string) (*report, error) {
	if nConns < 1 || duration <= 0 {
		return nil, errors.New("-conns and -duration must be positive")
	}
	tmp, err := os.MkdirTemp("", "sw-soak")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if keep {
			fmt.Fprintf(os.Stderr, "soak: daemon logs kept in %s\n", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()

	lbin, cbin, err := stack.Binaries(ctx, binDir, tmp)
	if err != nil {
		return nil, err
	}
	files, err := stack.WritePKI(tmp, uid)
	if err != nil {
		return nil, err
	}
	target, err := startEcho()
	if err != nil {
		return nil, err
	}
	defer target.close()

	quicPort, err := stack.FreePort("udp")
	if err != nil {
		return nil, err
	}
	apiPort, err := stack.FreePort("tcp")
	if err != nil {
		return nil, err
	}
	openPort, err := stack.FreePort("tcp")
	if err != nil {
		return nil, err
	}

	var pprofPorts [2]int
	for i := range pprofPorts {
		if pprofPorts[i], err = stack.FreePort("tcp"); err != nil {
			return nil, err
		}
	}
	l, err := startDaemon("sw-listener", lbin, tmp, pprofPorts[0],
		append(files.ListenerEnv(tmp, quicPort, apiPort), fmt.Sprintf("SWL_PPROF_ADDR=127.0.0.1:%d", pprofPorts[0])))
	if err != nil {
		return nil, err
	}
	defer l.Kill()
	c, err := startDaemon("sw-connector", cbin, tmp, pprofPorts[1],
		append(files.ConnectorEnv(quicPort), fmt.Sprintf("SWC_PPROF_ADDR=127.0.0.1:%d", pprofPorts[1])))
	if err != nil {
		return nil, err
	}
	defer c.Kill()

	fail := func(err error) (*report, error) {
		keep = true
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(openPort))
	if err := stack.OpenTunnel(ctx, apiPort, openPort, uid, target.port, l.Daemon, c.Daemon); err != nil {
		return fail(err)
	}
	// One probe through the tunnel, then let the daemons settle.
	if err := probe(addr); err != nil {
		return fail(fmt.Errorf("probe through the tunnel: %w", err))
	}
	daemons := []*daemon{l, c}
	for _, d := range daemons {
		if err := d.settleBaseline(ctx); err != nil {
			return fail(err)
		}
	}
	mon := startMonitor(daemons)

	rep := &report{
		Conns: nConns, Duration: duration.String(),
		Measured: "open file descriptors in /proc/PID/fd, goroutines from /debug/pprof/goroutine " +
			"and VmRSS/Threads from /proc/PID/status; " +
			fmt.Sprintf("fds and goroutines must return to baseline+%d and +%d within %s, RSS to within baseline+32 MiB within %s "+
				"(the daemons return memory once their load falls; the relay keeps a bounded set of free buffers "+
				"and the heap some headroom, so RSS is not expected to drop back exactly)", fdTolerance, gorTolerance, settleWait, rssWait),
	}
	st := &stats{}
	start := time.Now()
	runLoad(ctx, addr, nConns, duration, st)
	elapsed := time.Since(start)
	mon.stop()

	rep.Elapsed = elapsed.Round(time.Millisecond).String()
	rep.Bytes, rep.RoundTrips = st.bytes.Load(), st.rounds.Load()
	rep.MiBPerSec = float64(rep.Bytes) / (1 << 20) / elapsed.Seconds()
	rep.Corruptions, rep.Errors = st.corrupt.Load(), st.errs.Load()
	rep.ErrorSample = st.sample()
	if rep.Corruptions > 0 {
		rep.fail("%d connections saw corrupted data", rep.Corruptions)
	}
	if rep.Errors > 0 {
		rep.fail("%d connection errors", rep.Errors)
	}

	// All client connections are closed: wait for both daemons to let go.
	settleStart := time.Now()
	deadline := settleStart.Add(settleWait)
	for _, d := range daemons {
		s := d.stat
		for {
			n, _ := stack.CountFDs(d.Pid())
			g, _ := stack.Goroutines(d.pprof)
			s.FDsAfter, s.GorAfter = n, g
			if n <= s.FDsBaseline+fdTolerance && g <= s.GorBaseline+gorTolerance || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		s.SettledIn = time.Since(settleStart).Round(10 * time.Millisecond).String()
		if s.FDsAfter > s.FDsBaseline+fdTolerance {
			rep.fail("%s: %d fds after, baseline %d (+%d allowed): leak", s.Name, s.FDsAfter, s.FDsBaseline, fdTolerance)
			s.SettledIn = "never"
		}
		if s.GorAfter > s.GorBaseline+gorTolerance {
			rep.fail("%s: %d goroutines after, baseline %d (+%d allowed): leak", s.Name, s.GorAfter, s.GorBaseline, gorTolerance)
			s.SettledIn = "never"
		}
	}
	// RSS right after the close, then (bounded by rssWait) until it is back
	// within the tolerance: an idle Go process collects garbage only at the
	// forced GC every 2 minutes, and the scavenger returns the freed pages
	// to the OS gradually after that.
	for _, d := range daemons {
		s := d.stat
		s.RSSClosed, _, _ = stack.ReadStatus(d.Pid())
	}
	rssStart := time.Now()
	for _, d := range daemons {
		s := d.stat
		for {
			s.RSSAfter, s.ThreadsAfter, _ = stack.ReadStatus(d.Pid())
			if s.RSSAfter <= s.RSSBaseline+rssTolerance || time.Since(rssStart) > rssWait || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Second)
		}
		s.RSSSettledIn = time.Since(rssStart).Round(time.Second).String()
		if s.RSSAfter > s.RSSBaseline+rssTolerance {
			rep.fail("%s: RSS %d MiB %s after the close, baseline %d MiB (+32 MiB allowed)",
				s.Name, s.RSSAfter>>20, rssWait, s.RSSBaseline>>20)
			s.RSSSettledIn = "never"
		}
		rep.Daemons = append(rep.Daemons, s)
	}

	// SIGTERM: the connector first (it says "going away"), then the listener.
	for _, d := range []*daemon{c, l} {
		code, err := d.Terminate()
		d.stat.ExitCode = code
		if err != nil {
			rep.fail("%s: %v", d.stat.Name, err)
		} else if code != 0 {
			rep.fail("%s: exit code %d after SIGTERM", d.stat.Name, code)
		}
	}
	if ctx.Err() != nil {
		rep.fail("interrupted")
	}
	rep.Pass = len(rep.Failures) == 0
	keep = !rep.Pass
	return rep, nil
}

// echo is the in-process target: it copies back what it reads and closes
// its write side when the client does.
type echo struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup
	mu   sync.Mutex // guards conns
	conn map[net.Conn]struct{}
}

func startEcho() (*echo, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &echo{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, conn: map[net.Conn]struct{}{}}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conn[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Go(func() {
				defer func() {
					e.mu.Lock()
					delete(e.conn, c)
					e.mu.Unlock()
					c.Close()
				}()
				if _, err := io.Copy(c, c); err == nil {
					c.(*net.TCPConn).CloseWrite()
				}
			})
		}
	})
	return e, nil
}

func (e *echo) close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conn {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// daemon is one of the two processes with its figures.
type daemon struct {
	*stack.Daemon
	pprof string // its pprof endpoint, for the goroutine count
	stat  *daemonStat
}

func startDaemon(name, bin, dir string, pprofPort int, env []string) (*daemon, error) {
	d, err := stack.Start(name, bin, dir, nil, env...)
	if err != nil {
		return nil, err
	}
	return &daemon{Daemon: d, pprof: fmt.Sprintf("127.0.0.1:%d", pprofPort), stat: &daemonStat{Name: name, ExitCode: -1}}, nil
}

// settleBaseline waits until the fd count holds still for a second (at most
// 10 s) and records the baseline.
func (d *daemon) settleBaseline(ctx context.Context) error {
	prev := -1
	for range 20 {
		n, err := stack.CountFDs(d.Pid())
		if err != nil {
			return fmt.Errorf("%s: %w", d.stat.Name, err)
		}
		if n == prev {
			break
		}
		prev = n
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	s := d.stat
	s.FDsBaseline, s.FDsPeak = prev, prev
	rss, threads, err := stack.ReadStatus(d.Pid())
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	s.RSSBaseline, s.RSSPeak, s.ThreadsBase, s.ThreadsPeak = rss, rss, threads, threads
	if s.GorBaseline, err = stack.Goroutines(d.pprof); err != nil {
		return fmt.Errorf("%s: goroutines: %w", s.Name, err)
	}
	s.GorPeak = s.GorBaseline
	return nil
}

// monitor samples the daemons' fds, RSS and threads for their peaks.
type monitor struct {
	quit chan struct{}
	wg   sync.WaitGroup
}

func startMonitor(ds []*daemon) *monitor {
	m := &monitor{quit: make(chan struct{})}
	m.wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for _, d := range ds {
				s := d.stat
				if n, err := stack.CountFDs(d.Pid()); err == nil {
					s.FDsPeak = max(s.FDsPeak, n)
				}
				if rss, th, err := stack.ReadStatus(d.Pid()); err == nil {
					s.RSSPeak, s.ThreadsPeak = max(s.RSSPeak, rss), max(s.ThreadsPeak, th)
				}
				if g, err := stack.Goroutines(d.pprof); err == nil {
					s.GorPeak = max(s.GorPeak, g)
				}
			}
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	})
	return m
}

func (m *monitor) stop() { close(m.quit); m.wg.Wait() }

func probe(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	want := []byte("soak probe")
	if _, err := conn.Write(want); err != nil {
		return err
	}
	conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

type stats struct {
	bytes, rounds, corrupt, errs atomic.Int64
	mu                           sync.Mutex // guards errSample
	errSample                    []string
}

func (s *stats) fail(id int, err error) {
	s.errs.Add(1)
	s.note(fmt.Sprintf("conn %d: %v", id, err))
}

func (s *stats) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errSample) < 10 {
		s.errSample = append(s.errSample, msg)
	}
}

func (s *stats) sample() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errSample...)
}

// runLoad dials n connections at once and has each exchange data until the
// duration is over; it returns when every connection is closed.
func runLoad(ctx context.Context, addr string, n int, duration time.Duration, st *stats) {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { worker(ctx, addr, i, st) })
	}
	wg.Wait()
}

// worker is one tunnelled connection: random-size chunks (1 B–64 KiB) of
// random bytes, each written and read back in full and compared byte for
// byte, with a running SHA-256 of each direction compared at the end, then a
// half-close that must come back as EOF.
func worker(ctx context.Context, addr string, id int, st *stats) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		st.fail(id, fmt.Errorf("dial: %w", err))
		return
	}
	defer conn.Close()
	// Nothing may hang beyond the end of the run plus a grace period.
	end, _ := ctx.Deadline()
	conn.SetDeadline(end.Add(30 * time.Second))

	src := rand.NewChaCha8([32]byte{byte(id), byte(id >> 8), byte(id >> 16)})
	rng := rand.New(src)
	out, in := make([]byte, maxChunk), make([]byte, maxChunk)
	sent, recv := sha256.New(), sha256.New()
	for ctx.Err() == nil {
		n := 1 + rng.IntN(maxChunk)
		chunk := out[:n]
		src.Read(chunk)
		// Write and read at once: a 64 KiB chunk need not fit in the
		// buffers along the way while nobody reads the echo.
		werr := make(chan error, 1)
		go func() {
			_, err := conn.Write(chunk)
			werr <- err
		}()
		_, rerr := io.ReadFull(conn, in[:n])
		if err := <-werr; err != nil {
			st.fail(id, fmt.Errorf("write: %w", err))
			return
		}
		if rerr != nil {
			st.fail(id, fmt.Errorf("read: %w", rerr))
			return
		}
		sent.Write(chunk)
		recv.Write(in[:n])
		if !bytes.Equal(chunk, in[:n]) {
			st.corrupt.Add(1)
			st.note(fmt.Sprintf("conn %d: corrupted chunk of %d bytes", id, n))
			return
		}
		st.bytes.Add(int64(n))
		st.rounds.Add(1)
	}
	if !sameSum(sent, recv) {
		st.corrupt.Add(1)
		st.note(fmt.Sprintf("conn %d: running checksums differ", id))
		return
	}
	// Half-close: the echo target sees EOF and closes its side, which
	// must come back through both daemons as EOF with nothing before it.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		st.fail(id, fmt.Errorf("close write: %w", err))
		return
	}
	if extra, err := io.Copy(io.Discard, conn); err != nil || extra != 0 {
		st.fail(id, fmt.Errorf("after half-close: %d extra bytes, %v", extra, err))
	}
}

func sameSum(a, b hash.Hash) bool { return bytes.Equal(a.Sum(nil), b.Sum(nil)) }
