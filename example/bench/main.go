// Command sw-bench measures the tunnel against what it is built from. It
// runs a target (echo, sink, source), a raw quic-go server, sw-listener and
// sw-connector on loopback, each a process of its own with certificates it
// makes, and measures in the same run, in alternating rounds, three paths:
//
//	direct  TCP to the target                                        (a)
//	quic    raw quic-go, one mTLS connection, a stream per connection (b)
//	tunnel  TCP to the listener's opened port → QUIC → connector → target (c)
//
// Figures are the median of the rounds with min and max: bulk throughput on
// one connection each way, aggregate throughput with 8 and 64 connections,
// 64-byte round-trip latency, new connections per second (sequential and 32
// at once), CPU seconds per GB moved, and the memory and goroutines of each
// process holding many idle connections. It prints a table and writes every
// figure, with its ratios to (a) and (b), to bench.json. The README section
// "Benchmarks" says how to read them.
//
//	sw-bench -quick        # make bench-quick: under a minute
//	sw-bench               # make bench: the full run
//
// sw-bench re-executes itself for the helper processes: `sw-bench target`
// and `sw-bench quic-server`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/socket-warp/socket-warp/example/internal/stack"
)

const uid = "swc-bench"

type options struct {
	Quick        bool   `json:"quick"`
	Rounds       int    `json:"rounds"`
	Duration     string `json:"transfer_duration"`
	ConnDuration string `json:"conn_rate_duration"`
	LatencyIters int    `json:"latency_round_trips"`
	Idle         int    `json:"idle_conns"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	ClientProcs  int    `json:"client_gomaxprocs"`
	LogLevel     string `json:"daemon_log_level"`

	dur, connDur time.Duration
	bin, out     string
	profileDir   string
	profileSecs  int
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "target" || os.Args[1] == "quic-server") {
		helperMain(os.Args[1], os.Args[2:])
		return
	}
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "quick run (under a minute): 3 short rounds, 1,000 idle connections; explicit flags still win")
	flag.IntVar(&o.Rounds, "rounds", 5, "rounds; every figure is the median of the rounds")
	flag.DurationVar(&o.dur, "duration", 2*time.Second, "length of each throughput transfer")
	flag.DurationVar(&o.connDur, "conn-duration", 2*time.Second, "length of each new-connection-rate run")
	flag.IntVar(&o.LatencyIters, "latency-iters", 20000, "64-byte round trips per latency round")
	flag.IntVar(&o.Idle, "idle", 10000, "concurrent idle connections held per path for the memory figures")
	flag.IntVar(&o.GOMAXPROCS, "gomaxprocs", 0, "GOMAXPROCS of every helper and daemon process (0: the Go default, one per CPU)")
	flag.StringVar(&o.LogLevel, "log-level", "info", "SWL_LOG_LEVEL and SWC_LOG_LEVEL of the daemons (info, their default, logs two lines per tunnelled connection in each)")
	flag.StringVar(&o.bin, "bin", "bin", "directory holding sw-listener and sw-connector (built with go build when missing)")
	flag.StringVar(&o.out, "out", "bench.json", "where the JSON report is written")
	flag.StringVar(&o.profileDir, "profile", "", "directory for CPU profiles of the daemons and the raw QUIC server during an extra bulk transfer each way, and heap profiles while they hold the idle connections (empty: none)")
	flag.IntVar(&o.profileSecs, "profile-seconds", 5, "length of each profiled transfer")
	flag.Parse()
	if o.Quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":        func() { o.Rounds = 3 },
			"duration":      func() { o.dur = 300 * time.Millisecond },
			"conn-duration": func() { o.connDur = 300 * time.Millisecond },
			"latency-iters": func() { o.LatencyIters = 2000 },
			"idle":          func() { o.Idle = 1000 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	if o.Rounds < 1 || o.dur <= 0 || o.connDur <= 0 || o.LatencyIters < 1 || o.Idle < 0 || o.GOMAXPROCS < 0 || o.profileSecs < 1 {
		fatal(errors.New("-rounds, -duration, -conn-duration, -latency-iters and -profile-seconds must be positive; -idle and -gomaxprocs not negative"))
	}
	o.Duration, o.ConnDuration = o.dur.String(), o.connDur.String()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, &o)
	if rep != nil {
		rep.print(os.Stdout)
		data, jerr := json.MarshalIndent(rep, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(o.out, append(data, '\n'), 0o644)
		}
		if jerr != nil {
			fmt.Fprintf(os.Stderr, "sw-bench: %v\n", jerr)
		} else {
			fmt.Printf("\nwritten to %s\n", o.out)
		}
	}
	if err != nil {
		fatal(err)
	}
	if len(rep.Errors) > 0 {
		os.Exit(1)
	}
}

// env is what every spawned process gets on top of the bench's own.
func (o *options) env() []string {
	if o.GOMAXPROCS > 0 {
		return []string{"GOMAXPROCS=" + strconv.Itoa(o.GOMAXPROCS)}
	}
	return nil
}

func run(ctx context.Context, o *options) (*report, error) {
	if err := checkNoFile(o.Idle); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "sw-bench")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if keep {
			fmt.Fprintf(os.Stderr, "sw-bench: logs kept in %s\n", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	fail := func(err error) (*report, error) {
		keep = true
		return nil, err
	}

	lbin, cbin, err := stack.Binaries(ctx, o.bin, tmp)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	files, err := stack.WritePKI(tmp, uid)
	if err != nil {
		return nil, err
	}
	ports := map[string]int{}
	for _, name := range []string{"udp:listener", "udp:quic", "tcp:api", "tcp:open", "tcp:target",
		"tcp:pprof-l", "tcp:pprof-c", "tcp:pprof-q", "tcp:pprof-t"} {
		network := name[:3]
		if ports[name], err = stack.FreePort(network); err != nil {
			return nil, err
		}
	}
	addr := func(name string) string { return "127.0.0.1:" + strconv.Itoa(ports[name]) }

	var procs []*stack.Daemon
	defer func() {
		for _, d := range procs {
			d.Kill()
		}
	}()
	start := func(name, bin string, args []string, env ...string) (*stack.Daemon, error) {
		d, err := stack.Start(name, bin, tmp, args, append(o.env(), env...)...)
		if err == nil {
			procs = append(procs, d)
		}
		return d, err
	}
	target, err := start("target", self, []string{"target", "-addr", addr("tcp:target"), "-pprof", addr("tcp:pprof-t")})
	if err != nil {
		return nil, err
	}
	quicSrv, err := start("quic-server", self, []string{"quic-server", "-addr", addr("udp:quic"), "-pprof", addr("tcp:pprof-q"),
		"-cert", files.ServerCert, "-key", files.ServerKey, "-ca", files.CA})
	if err != nil {
		return nil, err
	}
	lenv := append(files.ListenerEnv(tmp, ports["udp:listener"], ports["tcp:api"]),
		"SWL_PPROF_ADDR="+addr("tcp:pprof-l"), "SWL_LOG_LEVEL="+o.LogLevel,
		// The default cap is 10,000 per connector; the idle test needs
		// that many and the probes on top.
		fmt.Sprintf("SWL_MAX_CONNS_PER_UID=%d", o.Idle+1000))
	l, err := start("sw-listener", lbin, nil, lenv...)
	if err != nil {
		return nil, err
	}
	c, err := start("sw-connector", cbin, nil, append(files.ConnectorEnv(ports["udp:listener"]), "SWC_PPROF_ADDR="+addr("tcp:pprof-c"), "SWC_LOG_LEVEL="+o.LogLevel)...)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, addr("tcp:target"), target); err != nil {
		return fail(err)
	}
	if err := stack.OpenTunnel(ctx, ports["tcp:api"], ports["tcp:open"], uid, ports["tcp:target"], l, c); err != nil {
		return fail(err)
	}
	qc, err := dialQUIC(ctx, addr("udp:quic"), files)
	if err != nil {
		return fail(err)
	}
	defer qc.close()

	pTarget := &proc{name: "target", d: target, pprof: addr("tcp:pprof-t")}
	pQUIC := &proc{name: "quic-server", d: quicSrv, pprof: addr("tcp:pprof-q")}
	pL := &proc{name: "sw-listener", d: l, pprof: addr("tcp:pprof-l")}
	pC := &proc{name: "sw-connector", d: c, pprof: addr("tcp:pprof-c")}
	paths := []*path{
		tcpPath("direct", "TCP to the target", addr("tcp:target"), pTarget),
		qc.path(pQUIC),
		tcpPath("tunnel", "TCP to the listener's port → QUIC → sw-connector → TCP to the target", addr("tcp:open"), pL, pC, pTarget),
	}
	for _, p := range paths {
		if _, err := latency(ctx, p, 1); err != nil {
			return fail(fmt.Errorf("probe %s: %w", p.name, err))
		}
	}

	rep := newReport(o, paths)
	steal0 := readCPUStat()
	runRounds(ctx, o, paths, rep)
	for _, p := range paths {
		if ctx.Err() != nil || o.Idle == 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "holding %d idle connections on %s\n", o.Idle, p.name)
		rep.Held[p.name] = holdIdle(ctx, p, o.Idle, o.profileDir)
	}
	rep.Machine.StealPercent = steal0.stealSince()
	if o.profileDir != "" && ctx.Err() == nil {
		if err := profile(ctx, o, paths, rep); err != nil {
			rep.Errors = append(rep.Errors, "profile: "+err.Error())
		}
	}
	rep.finish()

	for _, d := range []*stack.Daemon{c, l} {
		if code, err := d.Terminate(); err != nil || code != 0 {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: exit %d after SIGTERM: %v (log %s)", d.Name, code, err, d.Log))
		}
	}
	if ctx.Err() != nil {
		rep.Errors = append(rep.Errors, "interrupted")
	}
	keep = len(rep.Errors) > 0
	return rep, nil
}

// checkNoFile makes sure this process may hold the idle connections: Go
// raises the soft limit to the hard one at start, so the hard one counts.
func checkNoFile(idle int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	need := uint64(idle) + 1000
	if lim.Cur < need && lim.Max >= need {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < need {
		return fmt.Errorf("RLIMIT_NOFILE is %d (hard %d): %d idle connections need %d descriptors in this process and in each daemon; "+
			"raise the hard limit (ulimit -Hn, LimitNOFILE) or pass a smaller -idle", lim.Cur, lim.Max, idle, need)
	}
	return nil
}

// profile records CPU profiles of the daemons (tunnel) and of the raw QUIC
// server (quic) during one bulk transfer each way and one run of sequential
// new connections, outside the rounds.
func profile(ctx context.Context, o *options, paths []*path, rep *report) error {
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	d := time.Duration(o.profileSecs) * time.Second
	for _, p := range paths[1:] {
		for _, dir := range []struct {
			name string
			f    transfer
		}{{"up", upload}, {"down", download}, {"conns", sequentialConns}} {
			var wg sync.WaitGroup
			errs := make([]error, len(p.procs))
			for i, pr := range p.procs {
				if pr.name == "target" {
					continue
				}
				file := filepath.Join(o.profileDir, fmt.Sprintf("%s-%s.pprof", pr.name, dir.name))
				wg.Go(func() { errs[i] = fetch(ctx, pr.pprof, o.profileSecs, file) })
				rep.Profiles = append(rep.Profiles, file)
			}
			time.Sleep(100 * time.Millisecond) // the profiles have started
			_, _, terr := dir.f(ctx, p, d)
			wg.Wait()
			if err := errors.Join(append(errs, terr)...); err != nil {
				return fmt.Errorf("%s %s: %w", p.name, dir.name, err)
			}
		}
	}
	return nil
}

func fetch(ctx context.Context, pprofAddr string, secs int, file string) error {
	return fetchURL(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, secs), file)
}

// fetchURL saves what url answers to file.
func fetchURL(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sequentialConns is a new-connection run shaped as a transfer, for profile.
func sequentialConns(ctx context.Context, p *path, d time.Duration) (int64, time.Duration, error) {
	_, _, err := connRate(ctx, p, 1, d)
	return 0, d, err
}
