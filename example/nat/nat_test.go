package nat

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/connector"
	"github.com/socket-warp/socket-warp/shared/pki"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

var (
	binDir  string
	skipWhy string
)

// natTests is how many tests of this package may run at once unless
// -test.parallel says otherwise: more than there are. Each builds a world of
// its own (namespaces named per test; the same addresses and ports, but in
// different network stacks) and spends its time waiting on timers and the
// network, not on the CPU; the default, GOMAXPROCS, would run two at a time.
const natTests = 8

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", fmt.Sprint(natTests))
	}
	if skipWhy = namespacesWork(); skipWhy != "" {
		fmt.Fprintf(os.Stderr, "nat: fault tests skipped: %s\n", skipWhy)
	} else {
		dir, err := os.MkdirTemp("", "sw-nat-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, pkg := range []string{"listener/cmd/sw-listener", "connector/cmd/sw-connector", "example/cmd/sw-echo"} {
			cmd := exec.Command("go", "build", "-o", dir, "github.com/socket-warp/socket-warp/"+pkg)
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
				os.Exit(1)
			}
		}
		binDir = dir
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// proc is a daemon running inside a namespace, its stderr collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startIn(t *testing.T, ns, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, filepath.Join(binDir, name)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s in %s:\n%s", name, ns, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop ends the process gracefully, or kills it if it does not go.
func (p *proc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill9 ends the process without a word, like a power cut.
func (p *proc) kill9() {
	p.cmd.Process.Kill()
	<-p.done
}

// site is one test's world: topology, certificates, daemons, target.
type site struct {
	t         *testing.T
	tp        *topology
	dir       string
	pkiCA     *testutil.PKI
	api       *http.Client
	apiURL    string
	quicPort  int
	lenv      []string
	cenv      []string
	listener  *proc
	connector *proc
}

const uid = "swc-nat"

func newSite(t *testing.T) *site {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	s := &site{t: t, tp: newTopology(t), dir: t.TempDir(), pkiCA: testutil.NewPKI(t), quicPort: 11443}
	serverCert, serverKey := s.pkiCA.Issue(t, "server", pki.LeafOptions{CommonName: "listener.test", Usage: pki.Server,
		DNSNames: []string{"listener.test"}, IPs: []net.IP{net.ParseIP(listenerIP)}})
	clientCert, clientKey := s.pkiCA.ClientCert(t, uid)
	s.lenv = []string{
		"SWL_CERT_PATH=" + serverCert, "SWL_KEY_PATH=" + serverKey, "SWL_CA_PATH=" + s.pkiCA.CAPath,
		fmt.Sprintf("SWL_PORT=%d", s.quicPort), "APIS_PORT=8080", "SWL_LOG_LEVEL=debug",
		"SWL_STATE_PATH=" + filepath.Join(s.dir, "state.db"),
	}
	s.cenv = []string{
		"SWC_SETTINGS=", "SWC_CLIENT_CERT_PATH=" + clientCert, "SWC_CLIENT_KEY_PATH=" + clientKey,
		"SWC_CA_CERT_PATH=" + s.pkiCA.CAPath, "SWC_SERVER_NAME=listener.test", "SWC_SERVER_ADDRESS=" + listenerIP,
		fmt.Sprintf("SWC_SERVICE_PORT=%d", s.quicPort), "SWC_LOG_LEVEL=debug",
		// The keep-alive is the default: recovery after a NAT forgets its
		// mapping waits for the connector's next heartbeat, and the
		// default must make that quick. Reconnects are quicker than by
		// default, for the tests that end connections.
		"SWC_RETRY_MIN=200ms", "SWC_RETRY_MAX=2s",
	}
	s.api = &http.Client{Transport: &http.Transport{DialContext: dialer(s.tp.pub)}, Timeout: 10 * time.Second}
	s.apiURL = "http://127.0.0.1:8080"
	return s
}

func (s *site) startListener(extra ...string) {
	s.listener = startIn(s.t, s.tp.pub, "sw-listener", append(append([]string{}, s.lenv...), extra...))
	testutil.Eventually(s.t, "listener API up", func() bool {
		resp, err := s.api.Get(s.apiURL + "/list")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

func (s *site) startConnector(extra ...string) {
	s.connector = startIn(s.t, s.tp.site, "sw-connector", append(append([]string{}, s.cenv...), extra...))
}

// startTarget runs the echo service in the site, on the site's loopback:
// reachable from the connector only.
func (s *site) startTarget() string {
	startIn(s.t, s.tp.site, "sw-echo", nil, "-listen", "127.0.0.1:7000")
	return "127.0.0.1:7000"
}

// open opens port 9000 through the connector to 127.0.0.1:7000 in the site,
// retrying while the connector is not bound yet.
func (s *site) open() int {
	body := fmt.Sprintf(`{"uid":%q,"port":9000,"connect_address":"127.0.0.1","connect_port":7000}`, uid)
	testutil.Eventually(s.t, "port opened", func() bool {
		resp, err := s.api.Post(s.apiURL+"/open", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return 9000
}

// transfer sends n random bytes through the tunnel and checks the echo.
func (s *site) transfer(port, n int) error { return s.transferWithin(port, n, 60*time.Second) }

// transferWithin is transfer with a safety bound for slow, lossy paths.
func (s *site) transferWithin(port, n int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c, err := dialer(s.tp.pub)(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	payload := testutil.RandomBytes(s.t, n)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		return fmt.Errorf("%d bytes sent, %d came back with a different checksum", n, len(got))
	}
	return nil
}

// recovers waits until a fresh tunnelled transfer works and returns how
// long that took; the figure is for the report, the assertion is that it
// recovers at all.
func (s *site) recovers(what string, since time.Time) time.Duration {
	s.t.Helper()
	return s.recoversWithin(what, since, 90*time.Second, 3*time.Second)
}

// recoversWithin is recovers with a bound of its own and attempts of at
// most attempt each: an attempt started before the path healed waits for
// the listener's next retransmission, so shorter attempts measure closer.
func (s *site) recoversWithin(what string, since time.Time, limit, attempt time.Duration) time.Duration {
	s.t.Helper()
	deadline := since.Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		err := s.transferCtx(ctx, 1<<10)
		cancel()
		if err == nil {
			d := time.Since(since)
			s.t.Logf("%s: tunnelled connections work again after %s", what, d.Round(10*time.Millisecond))
			return d
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no recovery: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *site) transferCtx(ctx context.Context, n int) error {
	done := make(chan error, 1)
	go func() { done <- s.transfer(9000, n) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		go func() { <-done }()
		return ctx.Err()
	}
}

// remote is the address the listener sees the connector's bound
// connection come from (GET /connections).
func (s *site) remote() string {
	s.t.Helper()
	resp, err := s.api.Get(s.apiURL + "/connections")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var conns []struct{ UID, Remote string }
	if err := json.NewDecoder(resp.Body).Decode(&conns); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /connections: %d, %v", resp.StatusCode, err)
	}
	if len(conns) != 1 || conns[0].UID != uid {
		s.t.Fatalf("GET /connections: %+v, want %s alone", conns, uid)
	}
	return conns[0].Remote
}

// listenerMetric is a sample of the listener's /metrics; it fails the test
// when there is none.
func (s *site) listenerMetric(name string, labels ...string) float64 {
	s.t.Helper()
	m := testutil.ScrapeWith(s.t, s.api, s.apiURL+"/metrics", "")
	v, ok := m.Value(name, labels...)
	if !ok {
		s.t.Fatalf("no %s %v in the listener's metrics:\n%s", name, labels, m)
	}
	return v
}

// up brings listener, connector and target up with port 9000 open.
func (s *site) up() {
	s.startTarget()
	s.startListener()
	s.startConnector()
	s.open()
}

func TestTransferThroughNAT(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.up()
	if err := s.transfer(9000, 16<<20); err != nil {
		t.Fatal(err)
	}
	// The listener sees the connector from the router's address: a real NAT.
	if r := s.remote(); !strings.HasPrefix(r, routerOut+":") {
		t.Fatalf("listener sees the connector from %s, want the NAT's address %s", r, routerOut)
	}
	// Nothing in pub can reach the site directly.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := dialer(s.tp.pub)(ctx, "tcp", connectIP+":7000"); err == nil {
		c.Close()
		t.Fatal("the site is reachable from pub: the test network is not closed")
	}
}

// waitQuiet waits until nothing has crossed the NAT for d.
func (s *site) waitQuiet(d time.Duration) {
	s.t.Helper()
	last, since := s.tp.traffic(s.t), time.Now()
	testutil.Eventually(s.t, "a quiet tunnel", func() bool {
		if now := s.tp.traffic(s.t); now != last {
			last, since = now, time.Now()
		}
		return time.Since(since) >= d
	})
}

// quietAfterHeartbeat returns right after the connector's next packet on a
// quiet tunnel has crossed the NAT and the listener's answer has come back:
// nothing is in flight that could restore a mapping, and the connector's
// next packet is a whole heartbeat period away.
// It returns when it saw that packet, give or take one look at the counters.
func (s *site) quietAfterHeartbeat() (seen time.Time) {
	s.t.Helper()
	s.waitQuiet(500 * time.Millisecond)
	before := s.tp.traffic(s.t)
	testutil.Eventually(s.t, "a heartbeat", func() bool {
		seen = time.Now()
		return s.tp.traffic(s.t).upPackets > before.upPackets
	})
	s.waitQuiet(100 * time.Millisecond)
	if now := s.tp.traffic(s.t); now.downPackets == before.downPackets {
		s.t.Fatalf("no answer from the listener crossed the NAT: %+v", now.minus(before))
	}
	return seen
}

// TestNATFlushRecovers: with default settings, a NAT that forgets its
// mapping while the tunnel is quiet heals at the connector's next
// heartbeat. The flush comes right after one, the worst case; the bound is
// twice the 5 s the defaults are chosen for, so that a loaded machine does
// not fail it, and the figure is logged.
func TestNATFlushRecovers(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.up()
	if err := s.transfer(9000, 1<<20); err != nil {
		t.Fatal(err)
	}
	beat := s.quietAfterHeartbeat()
	flushed := time.Now()
	s.tp.flushNAT(t)
	t.Logf("NAT state flushed %s after the connector's last packet crossed it", flushed.Sub(beat).Round(10*time.Millisecond))
	s.recoversWithin("NAT state flushed while the tunnel was quiet", flushed, 10*time.Second, 500*time.Millisecond)
}

// TestIdleTrafficCost measures, with default settings, what an idle
// connector sends and receives, counted at the NAT, for the README: about
// one small packet each way per heartbeat period. Not parallel: it runs
// alone before the others (go test starts parallel tests only once the
// sequential ones are done), since a busy CPU delays acknowledgements past
// the connector's probe timeout and the probes it then sends would be
// counted as the cost of being idle.
func TestIdleTrafficCost(t *testing.T) {
	s := newSite(t)
	s.up()
	// Traffic first: quic-go probes the path MTU with large packets while
	// a connection is young, a cost paid once, not per minute.
	if err := s.transfer(9000, 1<<20); err != nil {
		t.Fatal(err)
	}
	s.quietAfterHeartbeat()
	before, start := s.tp.traffic(t), time.Now()
	time.Sleep(30 * time.Second) // the measurement window
	d, window := s.tp.traffic(t).minus(before), time.Since(start)
	perMinute := func(n int64) float64 { return float64(n) * float64(time.Minute) / float64(window) }
	t.Logf("idle connector, per minute: up (connector to listener) %.1f packets, %.0f bytes; down %.1f packets, %.0f bytes (IP headers included)",
		perMinute(d.upPackets), perMinute(d.upBytes), perMinute(d.downPackets), perMinute(d.downBytes))
	// One packet each way per heartbeat, one more for the window's edges,
	// and a quarter more for the odd retransmission on a loaded machine.
	beats := int64(window / time.Duration(connector.Defaults().KeepAlive))
	if limit := beats + beats/4 + 1; d.upPackets > limit || d.downPackets > limit {
		t.Errorf("%d packets up and %d down in %s: more than %d each way for %d heartbeats", d.upPackets, d.downPackets, window, limit, beats)
	}
	if d.upBytes > 100*d.upPackets || d.downBytes > 100*d.downPackets {
		t.Errorf("idle packets larger than 100 bytes: %+v", d)
	}
}

func TestLossAndDelay(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	// 3 % of forwarded packets dropped each way by the router. tc netem
	// is not in this kernel; the delay comes from a 40 ms delay line the
	// connector's traffic crosses in pub (see delayProxy).
	s.tp.nft(t, "add", "rule", "ip", "fault", "faults", "numgen", "random", "mod", "100", "<", "3", "drop")
	s.startTarget()
	s.startListener()
	proxyPort := s.delayProxy(40 * time.Millisecond)
	s.startConnector(fmt.Sprintf("SWC_SERVICE_PORT=%d", proxyPort))
	s.open()
	start := time.Now()
	// About 100 KB/s is what any loss-based congestion control gets from
	// 3 % loss at 80 ms RTT: the bound is generous, not a target.
	// 4 MiB each way is some 3,000 full packets per direction, about 90 of
	// them lost, and far more than the 80 ms path holds at once: losses in
	// every phase of the transfer. More bytes would repeat the same.
	if err := s.transferWithin(9000, lossPayload, 8*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB through 3 %% loss and 40 ms delay each way in %s", lossPayload>>20, time.Since(start).Round(time.Second))
}

const lossPayload = 4 << 20

func TestLinkDown20s(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.up()
	s.tp.linkDown(t, true)
	time.Sleep(20 * time.Second) // the fault itself: a 20 s outage
	s.tp.linkDown(t, false)
	s.recovers("link back after 20 s down", time.Now())
}

// TestListenerRestartRestoresPorts: the opened port comes back from the
// state file and the connector reconnects by itself.
func TestListenerRestartRestoresPorts(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.up()
	s.listener.stop()
	restarted := time.Now()
	s.startListener()
	s.recovers("listener restarted (port restored from its state file, no new /open)", restarted)
}

// TestConnectorKill9Restart: a connector killed without a word (its old
// connection still bound on the listener) and started again is usable at
// once: the listener probes the stale connection instead of refusing the
// newcomer as a duplicate until its idle timeout.
func TestConnectorKill9Restart(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.up()
	killed := s.remote()
	s.connector.kill9()
	restarted := time.Now()
	s.startConnector()
	d := s.recovers("connector killed with -9 and restarted", restarted)
	// The new connection took the UID, and was never refused as a
	// duplicate of the stale one, which did not go away by itself either
	// (it said nothing): the listener replaced it.
	if r := s.remote(); r == killed {
		t.Errorf("recovered after %s, but the listener still has the killed connector's connection (%s)", d, r)
	}
	if n := s.listenerMetric("socketwarp_listener_handshake_refusals_total", "reason", "duplicate_uid"); n != 0 {
		t.Errorf("recovered after %s, but the new connection was refused %v times as a duplicate", d, n)
	}
}
