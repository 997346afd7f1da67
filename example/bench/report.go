package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socket-warp/socket-warp/example/internal/stack"
)

// report is what bench.json holds.
type report struct {
	Options  *options          `json:"options"`
	Machine  machine           `json:"machine"`
	Paths    map[string]string `json:"paths"`
	Metrics  []*metric         `json:"metrics"`
	Held     map[string]*held  `json:"idle_connections"`
	Targets  []target          `json:"targets"`
	Profiles []string          `json:"profiles,omitempty"`
	Errors   []string          `json:"errors,omitempty"`
	Started  time.Time         `json:"started"`
	Elapsed  string            `json:"elapsed"`
	byKey    map[string]*metric
	paths    []string
}

type machine struct {
	CPU          string  `json:"cpu"`
	CPUs         int     `json:"cpus"`
	MemTotal     string  `json:"mem_total"`
	Kernel       string  `json:"kernel"`
	Go           string  `json:"go"`
	StealPercent float64 `json:"steal_percent"` // of all CPU time during the rounds, from /proc/stat
}

// metric is one figure on every path it applies to.
type metric struct {
	Key    string              `json:"key"`
	Name   string              `json:"name"`
	Unit   string              `json:"unit"`
	Higher bool                `json:"higher_is_better"`
	Paths  map[string]*summary `json:"paths"`
	// Ratios of each path's median to the direct (a) and raw QUIC (b) medians.
	ToDirect map[string]float64 `json:"ratio_to_direct,omitempty"`
	ToQUIC   map[string]float64 `json:"ratio_to_quic,omitempty"`
}

type summary struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

type target struct {
	What string  `json:"what"`
	Got  float64 `json:"got"`
	Want string  `json:"want"`
	Met  bool    `json:"met"`
}

func newReport(o *options, paths []*path) *report {
	o.ClientProcs = runtime.GOMAXPROCS(0)
	r := &report{Options: o, Machine: readMachine(), Paths: map[string]string{}, Held: map[string]*held{},
		byKey: map[string]*metric{}, Started: time.Now()}
	for _, p := range paths {
		r.Paths[p.name] = p.about
		r.paths = append(r.paths, p.name)
	}
	return r
}

// add records one round's value of a figure on a path.
func (r *report) add(key, name, unit string, higher bool, pathName string, v float64) {
	m := r.byKey[key]
	if m == nil {
		m = &metric{Key: key, Name: name, Unit: unit, Higher: higher, Paths: map[string]*summary{}}
		r.byKey[key] = m
		r.Metrics = append(r.Metrics, m)
	}
	s := m.Paths[pathName]
	if s == nil {
		s = &summary{}
		m.Paths[pathName] = s
	}
	s.Rounds = append(s.Rounds, v)
}

// cpuMeter measures the CPU time of a path's processes during one step.
type cpuMeter struct {
	procs  []*proc
	before []time.Duration
	client time.Duration
}

func startCPU(p *path) *cpuMeter {
	m := &cpuMeter{procs: p.procs}
	for _, pr := range p.procs {
		t, _ := stack.ReadCPU(pr.d.Pid())
		m.before = append(m.before, t)
	}
	m.client, _ = stack.ReadCPU(os.Getpid())
	return m
}

// perGB records CPU seconds per GB (1e9 bytes) moved, per process and for
// all of them together.
func (m *cpuMeter) perGB(r *report, p *path, bytes int64) {
	if bytes <= 0 {
		return
	}
	gb := float64(bytes) / 1e9
	var total float64
	for i, pr := range m.procs {
		t, _ := stack.ReadCPU(pr.d.Pid())
		s := (t - m.before[i]).Seconds()
		total += s
		r.add("cpu_"+pr.name+"_"+p.name, pr.name, "s/GB", false, p.name, s/gb)
	}
	// The client's share matters: on the raw path it is one of the two
	// QUIC ends, the work sw-listener does in the tunnel.
	t, _ := stack.ReadCPU(os.Getpid())
	s := (t - m.client).Seconds()
	r.add("cpu_client_"+p.name, "client (sw-bench)", "s/GB", false, p.name, s/gb)
	r.add("cpu_total", "CPU s/GB bulk, all processes", "s/GB", false, p.name, (total+s)/gb)
}

const mb = 1e6

// runRounds measures every figure on every path, round after round; the
// order of the paths rotates each round, so that no path always runs first
// (or right after the most expensive one) on a machine whose speed drifts.
func runRounds(ctx context.Context, o *options, paths []*path, r *report) {
	type step struct {
		name string
		run  func(p *path) error
	}
	bulk := func(key, name string, f transfer) step {
		return step{name, func(p *path) error {
			cpu := startCPU(p)
			n, el, err := f(ctx, p, o.dur)
			if err != nil {
				return err
			}
			cpu.perGB(r, p, n)
			r.add(key, name, "MB/s", true, p.name, float64(n)/mb/el.Seconds())
			return nil
		}}
	}
	agg := func(n int, dir string, f transfer) step {
		key, name := fmt.Sprintf("agg%d_%s", n, dir), fmt.Sprintf("aggregate %s, %d conns", dir, n)
		return step{name, func(p *path) error {
			v, err := parallel(ctx, p, n, o.dur, f)
			if err == nil {
				r.add(key, name, "MB/s", true, p.name, v/mb)
			}
			return err
		}}
	}
	rate := func(workers int, key, name string) step {
		return step{name, func(p *path) error {
			v, ttfb, err := connRate(ctx, p, workers, o.connDur)
			if err != nil {
				return err
			}
			s := sortedCopy(ttfb)
			r.add(key, name, "conn/s", true, p.name, v)
			r.add(key+"_ttfb_p50", name+": time to first byte p50", "µs", false, p.name, percentile(s, 0.50))
			r.add(key+"_ttfb_p99", name+": time to first byte p99", "µs", false, p.name, percentile(s, 0.99))
			return nil
		}}
	}
	steps := []step{
		bulk("bulk_up", "bulk client→target, 1 conn", upload),
		bulk("bulk_down", "bulk target→client, 1 conn", download),
		agg(8, "up", upload), agg(8, "down", download),
		agg(64, "up", upload), agg(64, "down", download),
		{"latency 64 B", func(p *path) error {
			rtts, err := latency(ctx, p, o.LatencyIters)
			if err != nil {
				return err
			}
			s := sortedCopy(rtts)
			r.add("lat_p50", "64 B round trip p50", "µs", false, p.name, percentile(s, 0.50))
			r.add("lat_p99", "64 B round trip p99", "µs", false, p.name, percentile(s, 0.99))
			r.add("lat_p999", "64 B round trip p99.9", "µs", false, p.name, percentile(s, 0.999))
			return nil
		}},
		rate(1, "conn_seq", "new conns, sequential"),
		rate(32, "conn_c32", "new conns, 32 concurrent"),
	}
	for round := range o.Rounds {
		fmt.Fprintf(os.Stderr, "round %d/%d\n", round+1, o.Rounds)
		for _, st := range steps {
			for i := range paths {
				p := paths[(i+round)%len(paths)]
				if ctx.Err() != nil {
					return
				}
				if err := st.run(p); err != nil {
					r.Errors = append(r.Errors, fmt.Sprintf("round %d, %s, %s: %v", round+1, st.name, p.name, err))
				}
			}
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// finish computes the summaries, the ratios and the targets.
func (r *report) finish() {
	r.Elapsed = time.Since(r.Started).Round(time.Second).String()
	// The CPU figures come from the first step but read best last.
	slices.SortStableFunc(r.Metrics, func(a, b *metric) int {
		return cmp.Compare(btoi(strings.HasPrefix(a.Key, "cpu_")), btoi(strings.HasPrefix(b.Key, "cpu_")))
	})
	for _, m := range r.Metrics {
		for _, s := range m.Paths {
			s.Median, s.Min, s.Max = median(s.Rounds), slices.Min(s.Rounds), slices.Max(s.Rounds)
		}
		for base, out := range map[string]*map[string]float64{"direct": &m.ToDirect, "quic": &m.ToQUIC} {
			b := m.Paths[base]
			if b == nil || b.Median == 0 {
				continue
			}
			*out = map[string]float64{}
			for name, s := range m.Paths {
				if name != base {
					(*out)[name] = s.Median / b.Median
				}
			}
		}
	}
	med := func(key, path string) float64 {
		if m := r.byKey[key]; m != nil && m.Paths[path] != nil {
			return m.Paths[path].Median
		}
		return 0
	}
	ratio := func(what, key string, factor float64) {
		q, t := med(key, "quic"), med(key, "tunnel")
		r.Targets = append(r.Targets, target{What: what + " (tunnel / raw QUIC)", Got: t / q,
			Want: fmt.Sprintf("≥ %.2f", factor), Met: q > 0 && t >= factor*q})
	}
	ratio("bulk client→target", "bulk_up", 0.9)
	ratio("bulk target→client", "bulk_down", 0.9)
	lat := func(what, key string, factor float64) {
		budget := med(key, "quic") + 2*med(key, "direct")
		t := med(key, "tunnel")
		r.Targets = append(r.Targets, target{What: what + " (tunnel / (raw QUIC + 2 × direct))", Got: t / budget,
			Want: fmt.Sprintf("≤ %.2f", factor), Met: budget > 0 && t > 0 && t <= factor*budget})
	}
	lat("64 B latency p50", "lat_p50", 1.2)
	lat("64 B latency p99", "lat_p99", 1.4)
	conns := func(what, key string) {
		q, d, t := med(key, "quic"), med(key, "direct"), med(key, "tunnel")
		var budget float64
		if q > 0 && d > 0 {
			budget = 1 / (1/q + 2/d)
		}
		r.Targets = append(r.Targets, target{What: what + " (tunnel / (1/(1/raw QUIC + 2/direct)))", Got: t / budget,
			Want: "≥ 0.80", Met: budget > 0 && t >= 0.8*budget})
	}
	conns("new conns sequential", "conn_seq")
	conns("new conns 32 concurrent", "conn_c32")
	if h := r.Held["tunnel"]; h != nil {
		r.Targets = append(r.Targets, target{What: fmt.Sprintf("%d idle tunnelled conns held, answering", h.Conns),
			Got: float64(h.Answering), Want: strconv.Itoa(h.Conns), Met: h.Answering == h.Conns})
		for _, ph := range h.Procs {
			if ph.Name == "target" {
				continue
			}
			r.Targets = append(r.Targets, target{What: "RSS per idle tunnelled conn, " + ph.Name + " (KiB)",
				Got: ph.BytesPerConn / 1024, Want: "≤ 16", Met: h.Opened > 0 && ph.BytesPerConn <= 16<<10})
		}
	}
}

func (r *report) print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "\nsw-bench: %d rounds, transfers %s, connection runs %s, %d latency round trips, GOMAXPROCS %s (client %d), daemon log level %s, elapsed %s\n",
		o.Rounds, o.Duration, o.ConnDuration, o.LatencyIters, procsString(o.GOMAXPROCS), o.ClientProcs, o.LogLevel, r.Elapsed)
	m := r.Machine
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s RAM, Linux %s, %s; steal %.1f%% of CPU time during the run\n",
		m.CPU, m.CPUs, m.MemTotal, m.Kernel, m.Go, m.StealPercent)
	fmt.Fprintln(w, "median of the rounds [min–max]; (a) direct TCP, (b) raw quic-go, (c) tunnel")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tunit\t(a) direct\t(b) quic\t(c) tunnel\tc/a\tc/b\tb/a\t")
	for _, mt := range r.Metrics {
		if strings.HasPrefix(mt.Key, "cpu_") && mt.Key != "cpu_total" {
			continue
		}
		row := []string{mt.Name, mt.Unit}
		for _, p := range r.paths {
			row = append(row, fmtSummary(mt.Paths[p]))
		}
		row = append(row, fmtRatio(mt.ToDirect, "tunnel"), fmtRatio(mt.ToQUIC, "tunnel"), fmtRatio(mt.ToDirect, "quic"))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()

	fmt.Fprintln(w, "\nCPU seconds per GB moved in the single-connection bulk rounds (both directions), per process:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range r.paths {
		for _, mt := range r.Metrics {
			if s := mt.Paths[p]; s != nil && strings.HasPrefix(mt.Key, "cpu_") && mt.Key != "cpu_total" {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", p, mt.Name, fmtSummary(s))
			}
		}
	}
	tw.Flush()

	if len(r.Held) > 0 {
		fmt.Fprintln(w, "\nidle connections held (after the rounds' traffic; each exchanged 64 B when opened and again after the measurement):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "path\tprocess\tconns\tanswering\tRSS idle\tRSS held\tbytes/conn\tgoroutines idle\theld\tper conn\tfds\t")
		for _, p := range r.paths {
			h := r.Held[p]
			if h == nil {
				continue
			}
			for _, ph := range h.Procs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f MiB\t%.1f MiB\t%.0f\t%d\t%d\t%.2f\t%d\t\n", p, ph.Name, h.Opened, h.Answering,
					float64(ph.RSSIdle)/(1<<20), float64(ph.RSSHeld)/(1<<20), ph.BytesPerConn,
					ph.GoroutinesIdle, ph.GoroutinesHeld, ph.GoroutinesPer, ph.FDsHeld)
			}
			for _, e := range h.Errors {
				fmt.Fprintf(tw, "  error: %s\n", e)
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\ntargets (medians of this run):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "  %s\t%.2f\twant %s\t%s\t\n", t.What, t.Got, t.Want, verdict)
	}
	tw.Flush()
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "profile: %s\n", p)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "ERROR: %s\n", e)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func procsString(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

func fmtSummary(s *summary) string {
	if s == nil || len(s.Rounds) == 0 {
		return "-"
	}
	f := func(v float64) string {
		switch {
		case v >= 100:
			return strconv.FormatFloat(v, 'f', 0, 64)
		case v >= 10:
			return strconv.FormatFloat(v, 'f', 1, 64)
		default:
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
	}
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

func fmtRatio(m map[string]float64, p string) string {
	if v, ok := m[p]; ok {
		return fmt.Sprintf("%.2f", v)
	}
	return "-"
}

func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	for _, f := range []struct {
		file, key string
		dst       *string
	}{{"/proc/cpuinfo", "model name", &m.CPU}, {"/proc/meminfo", "MemTotal", &m.MemTotal}} {
		data, err := os.ReadFile(f.file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == f.key {
				*f.dst = strings.TrimSpace(v)
				break
			}
		}
	}
	if kb, err := strconv.ParseInt(strings.TrimSuffix(m.MemTotal, " kB"), 10, 64); err == nil {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	return m
}

// cpuStat is the machine-wide "cpu" line of /proc/stat.
type cpuStat struct{ total, steal int64 }

func readCPUStat() cpuStat {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	var s cpuStat
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal; guest is in user already
			s.total += n
		}
		if i == 7 {
			s.steal = n
		}
	}
	return s
}

func (s cpuStat) stealSince() float64 {
	now := readCPUStat()
	if now.total <= s.total {
		return 0
	}
	return 100 * float64(now.steal-s.steal) / float64(now.total-s.total)
}
