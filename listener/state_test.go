package listener

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// launched is a listener under test that the test may stop before its end.
type launched struct {
	*Listener
	api  string // http://127.0.0.1:port
	logs *observer.ObservedLogs
	stop func()
}

// launch runs a listener of cfg; prepare, if given, sees it between New and
// Run.
func launch(t *testing.T, cfg Config, prepare ...func(*Listener)) *launched {
	t.Helper()
	log, logs := testutil.Logger(t, "listener")
	l, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prepare {
		p(l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(safety):
				t.Fatal("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return &launched{Listener: l, api: "http://" + l.APIAddrs()[0].String(), logs: logs, stop: stop}
}

// httpDo sends one API request, with "Authorization: Bearer token" unless
// token is "", and returns the status and the body.
func httpDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// listPorts is GET /list, decoded.
func (l *launched) listPorts(t *testing.T) []port.Spec {
	t.Helper()
	status, body := httpDo(t, http.MethodGet, l.api+"/list", "", "")
	var ports []port.Spec
	if err := json.Unmarshal([]byte(body), &ports); status != http.StatusOK || err != nil {
		t.Fatalf("list: %d %s", status, body)
	}
	return ports
}

func openBody(p port.Spec) string {
	return fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":%q,"connect_port":%d}`, p.UID, p.Port, p.ConnectAddress, p.ConnectPort)
}

func closeBody(port int) string { return fmt.Sprintf(`{"port":%d}`, port) }

// clientOutcome connects, sends a little and reads to the end, and returns
// the first error. Linux reports a reset to one call only: the connect, the
// write or the read, whichever the RST reaches first.
func clientOutcome(t *testing.T, port int) error {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(safety))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	_, err = io.ReadAll(c)
	return err
}

// expectBound checks that port is still listened on.
func expectBound(t *testing.T, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		ln.Close()
		t.Fatalf("port %d is not bound", port)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("port %d: %v, want address already in use", port, err)
	}
}

// seed writes ports to the state file at path, as a previous run would.
func seed(t *testing.T, path string, ports ...port.Spec) {
	t.Helper()
	s, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range ports {
		// Over whatever a previous seed wrote.
		prev := int64(0)
		if snap, _ := s.List(t.Context()); snap.Revision > 0 {
			for _, r := range snap.Ports {
				if r.Port == p.Port {
					prev = r.Revision
				}
			}
		}
		if _, err := s.Put(t.Context(), p, prev); err != nil {
			t.Fatal(err)
		}
	}
}

// stored reads the state file at path.
func stored(t *testing.T, path string) []port.Spec {
	t.Helper()
	s, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]port.Spec, len(snap.Ports))
	for i, r := range snap.Ports {
		ports[i] = r.Spec
	}
	return ports
}

// TestOpenedPortsSurviveRestart: a port opened through the API is open
// again after a restart on the same state file, before its connector is
// back (its clients are refused at once, not kept waiting), and a port
// closed through the API stays closed after the next restart.
func TestOpenedPortsSurviveRestart(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	first := launch(t, cfg)
	connectorConn(t, f, first.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-1") })
	spec := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "db.internal", ConnectPort: 5432}
	if status, body := httpDo(t, http.MethodPost, first.api+"/open", "", openBody(spec)); status != http.StatusOK {
		t.Fatalf("open: %d %s", status, body)
	}
	first.stop()
	expectFree(t, "tcp", spec.Port)

	second := launch(t, cfg)
	if got := second.listPorts(t); !reflect.DeepEqual(got, []port.Spec{spec}) {
		t.Fatalf("list after a restart: %+v, want [%+v]", got, spec)
	}
	status, body := httpDo(t, http.MethodGet, second.api+"/list", "", "")
	// The shape of /open, then the live figures of a served port.
	live := `,"active_connections":0,"bytes_up":0,"bytes_down":0}`
	if want := "[" + strings.TrimSuffix(openBody(spec), "}") + live + "]"; status != http.StatusOK || body != want {
		t.Fatalf("list after a restart: %d %s, want the shape of /open plus live fields: %s", status, body, want)
	}
	if !testutil.Logged(second.logs, "port restored", "port", strconv.Itoa(spec.Port)) {
		t.Error("the restored port is not logged")
	}
	if second.Connected("swc-1") {
		t.Fatal("the test's connector is connected to the second listener")
	}
	if err := clientOutcome(t, spec.Port); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client of a restored port without its connector: %v, want connection reset", err)
	}
	testutil.Eventually(t, "the client counted as refused for want of a connector", func() bool {
		return second.outcomes[outcomeNoConnector].Load() == 1
	})

	if status, body := httpDo(t, http.MethodDelete, second.api+"/close", "", closeBody(spec.Port)); status != http.StatusOK || body != openBody(spec) {
		t.Fatalf("close: %d %s", status, body)
	}
	second.stop()

	third := launch(t, cfg)
	if got := third.listPorts(t); len(got) != 0 {
		t.Fatalf("list after close and restart: %+v, want none", got)
	}
	expectFree(t, "tcp", spec.Port)
}

// TestRestoreBindsTakenPortsAnew: a stored port whose address another
// socket holds at start is served as one whose socket died — GET /list gives
// it an error, /readyz answers 503 naming it, the metrics count it down —
// and bound as soon as the address is free, until DELETE /close forgets it.
// A stored port that cannot be served at all is listed with its error, and
// POST /open replaces it.
func TestRestoreBindsTakenPortsAnew(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	freedLn, closedLn := testutil.Listen(t), testutil.Listen(t)
	free := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "echo.internal", ConnectPort: 7}
	freed := port.Spec{UID: "swc-1", Port: freedLn.Addr().(*net.TCPAddr).Port, ConnectAddress: "echo.internal", ConnectPort: 7}
	closed := port.Spec{UID: "swc-2", Port: closedLn.Addr().(*net.TCPAddr).Port, ConnectAddress: "10.0.0.3", ConnectPort: 80}
	broken := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "echo.internal"} // no target port
	seed(t, cfg.StatePath, free, freed, closed, broken)

	l := launch(t, cfg)
	inUse := func(p port.Spec) port.Spec {
		p.Error = fmt.Sprintf("not bound at start; re-binding: listen tcp 127.0.0.1:%d: bind: address already in use", p.Port)
		return p
	}
	unservable := broken
	unservable.Error = streamHeader(broken, nil).Validate().Error()
	want := map[int]port.Spec{free.Port: free, freed.Port: inUse(freed), closed.Port: inUse(closed), broken.Port: unservable}
	got := l.listPorts(t)
	if len(got) != len(want) {
		t.Fatalf("list: %+v, want the 4 stored ports", got)
	}
	for _, p := range got {
		if p != want[p.Port] {
			t.Errorf("listed %+v, want %+v", p, want[p.Port])
		}
	}
	for _, p := range []port.Spec{freed, closed} {
		if !testutil.Logged(l.logs, "port restore failed, re-binding", "port", strconv.Itoa(p.Port)) {
			t.Errorf("the failure of port %d is not logged", p.Port)
		}
	}
	if !testutil.Logged(l.logs, "port restore failed", "reason", unservable.Error) {
		t.Errorf("the unservable port is not logged with its reason")
	}
	status, body := httpDo(t, http.MethodGet, l.api+"/readyz", "", "")
	for _, p := range []port.Spec{freed, closed} {
		if want := fmt.Sprintf("port %d: not bound at start", p.Port); status != http.StatusServiceUnavailable || !strings.Contains(body, want) {
			t.Errorf("readyz: %d %s, want 503 naming %q", status, body, want)
		}
	}
	metric := func(name string) float64 {
		t.Helper()
		m := testutil.Scrape(t, l.api+"/metrics", "")
		v, ok := m.Value(name)
		if !ok {
			t.Fatalf("no metric %s:\n%s", name, m)
		}
		return v
	}
	if up, down := metric("socketwarp_listener_ports"), metric("socketwarp_listener_ports_down"); up != 1 || down != 2 {
		t.Errorf("ports %v, ports_down %v; want 1 and 2", up, down)
	}

	// Once its address is free, the port is bound and serves.
	playConnector(t, connectorConn(t, f, l.Listener, "swc-1"), wire.VerdictOK)
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	freedLn.Close()
	testutil.Eventually(t, "the freed port bound", func() bool {
		for _, p := range l.listPorts(t) {
			if p.Port == freed.Port {
				return p.Error == ""
			}
		}
		return false
	})
	echoVia(t, dial(t, freed.Port), "restored late")
	if up, down, rebinds := metric("socketwarp_listener_ports"), metric("socketwarp_listener_ports_down"),
		metric("socketwarp_listener_port_rebinds_total"); up != 2 || down != 1 || rebinds != 1 {
		t.Errorf("ports %v, ports_down %v, port_rebinds_total %v; want 2, 1 and 1", up, down, rebinds)
	}

	// A port being bound is open: POST /open of it is refused, DELETE
	// /close forgets it, and nothing binds it later.
	connectorConn(t, f, l.Listener, "swc-2")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-2") })
	if status, body := httpDo(t, http.MethodPost, l.api+"/open", "", openBody(closed)); status != http.StatusConflict {
		t.Errorf("open of a port being bound: %d %s, want 409", status, body)
	}
	status, body = httpDo(t, http.MethodDelete, l.api+"/close", "", closeBody(closed.Port))
	var answered port.Spec
	if err := json.Unmarshal([]byte(body), &answered); status != http.StatusOK || err != nil || answered.Port != closed.Port {
		t.Fatalf("close of a port being bound: %d %s", status, body)
	}
	closedLn.Close()
	expectFree(t, "tcp", closed.Port)

	// POST /open replaces the unservable one.
	broken.ConnectPort = 8080
	if status, body := httpDo(t, http.MethodPost, l.api+"/open", "", openBody(broken)); status != http.StatusOK {
		t.Fatalf("open of a port listed with an error: %d %s", status, body)
	}
	expectBound(t, broken.Port)
	if status, body := httpDo(t, http.MethodGet, l.api+"/readyz", "", ""); status != http.StatusOK {
		t.Errorf("readyz once every port listens: %d %s", status, body)
	}
	l.stop()
	if got, want := stored(t, cfg.StatePath), sortedPorts(free, freed, broken); !reflect.DeepEqual(got, want) {
		t.Fatalf("state file after the run: %+v, want %+v", got, want)
	}
}

func sortedPorts(ports ...port.Spec) []port.Spec {
	out := slices.Clone(ports)
	slices.SortFunc(out, func(a, b port.Spec) int { return a.Port - b.Port })
	return out
}

// TestNewRefusesUnreadableState: a state file that cannot be read stops New
// with an error naming it, never a listener started empty, and New releases
// what it had bound.
func TestNewRefusesUnreadableState(t *testing.T) {
	f := newFiles(t)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
		want  []string
	}{
		{"random bytes", func(t *testing.T, path string) {
			if err := os.WriteFile(path, testutil.RandomBytes(t, 32<<10), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"corrupt or not a bbolt file"}},
		{"an empty file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"is empty (0 bytes)", "remove it to start with no ports"}},
		{"a record of a newer version", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("ports"))
				if err != nil {
					return err
				}
				return b.Put([]byte{0x1f, 0x90}, []byte(`{"version":3,"uid":"swc-1","port":8080}`))
			})
			if err != nil {
				t.Fatal(err)
			}
		}, []string{"port 8080", "record version 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			cfg.Port, cfg.APIPort = testutil.FreeUDPPort(t), testutil.FreePort(t)
			tc.write(t, cfg.StatePath)
			before, err := os.ReadFile(cfg.StatePath)
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(cfg, zap.NewNop())
			if l != nil {
				t.Fatal("New returned a listener along with an error")
			}
			testutil.WantErr(t, err, append([]string{"SWL_STATE_PATH", "state file " + cfg.StatePath}, tc.want...)...)
			if after, err := os.ReadFile(cfg.StatePath); err != nil || !bytes.Equal(after, before) {
				t.Errorf("New changed the state file it refused (%v)", err)
			}
			expectFree(t, "udp", cfg.Port)
			expectFree(t, "tcp", cfg.APIPort)
		})
	}
}

// TestSecondListenerOnTheSameState: the state file is locked while a
// listener runs; a second one on it fails at once, naming the file.
func TestSecondListenerOnTheSameState(t *testing.T) {
	f := newFiles(t)
	cfg := f.config() // ports 0: only the file is shared
	first := launch(t, cfg)
	l, err := New(cfg, zap.NewNop())
	if l != nil {
		t.Fatal("a second listener started on a locked state file")
	}
	testutil.WantErr(t, err, "SWL_STATE_PATH", "state file "+cfg.StatePath, "locked by another process")
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("error %v does not wrap store.ErrLocked", err)
	}
	first.stop()
	launch(t, cfg).stop()
}

// flakyStore fails Put or Delete on demand.
type flakyStore struct {
	store.Store
	mu             sync.Mutex
	putErr, delErr error
}

func (s *flakyStore) fail(put, del error) {
	s.mu.Lock()
	s.putErr, s.delErr = put, del
	s.mu.Unlock()
}

func (s *flakyStore) Put(ctx context.Context, p port.Spec, prev int64) (int64, error) {
	s.mu.Lock()
	err := s.putErr
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return s.Store.Put(ctx, p, prev)
}

func (s *flakyStore) Delete(ctx context.Context, n int, prev int64) (port.Spec, int64, error) {
	s.mu.Lock()
	err := s.delErr
	s.mu.Unlock()
	if err != nil {
		return port.Spec{}, 0, err
	}
	return s.Store.Delete(ctx, n, prev)
}

// TestStateWriteFailures: what is served and what the state file says stay
// the same when the file cannot be written. A port that cannot be saved is
// not opened (500, the port released); a port that cannot be removed is not
// closed (500, still served and listed).
func TestStateWriteFailures(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	flaky := &flakyStore{}
	l := launch(t, cfg, func(l *Listener) { flaky.Store, l.store = l.store, flaky })
	connectorConn(t, f, l.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	spec := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "db.internal", ConnectPort: 5432}

	flaky.fail(errors.New("state file x: no space left on device"), nil)
	status, body := httpDo(t, http.MethodPost, l.api+"/open", "", openBody(spec))
	if status != http.StatusInternalServerError || !strings.Contains(body, fmt.Sprintf("open port %d: not opened", spec.Port)) ||
		!strings.Contains(body, "no space left on device") {
		t.Fatalf("open with a failing state file: %d %s", status, body)
	}
	expectFree(t, "tcp", spec.Port)
	if got := l.listPorts(t); len(got) != 0 {
		t.Fatalf("list: %+v, want none", got)
	}

	flaky.fail(nil, nil)
	if status, body := httpDo(t, http.MethodPost, l.api+"/open", "", openBody(spec)); status != http.StatusOK {
		t.Fatalf("open: %d %s", status, body)
	}
	flaky.fail(nil, errors.New("state file x: read-only file system"))
	status, body = httpDo(t, http.MethodDelete, l.api+"/close", "", closeBody(spec.Port))
	if status != http.StatusInternalServerError || !strings.Contains(body, fmt.Sprintf("close port %d: not closed", spec.Port)) ||
		!strings.Contains(body, "read-only file system") {
		t.Fatalf("close with a failing state file: %d %s", status, body)
	}
	expectBound(t, spec.Port)
	if got := l.listPorts(t); !reflect.DeepEqual(got, []port.Spec{spec}) {
		t.Fatalf("list: %+v, want [%+v]", got, spec)
	}

	flaky.fail(nil, nil)
	if status, body := httpDo(t, http.MethodDelete, l.api+"/close", "", closeBody(spec.Port)); status != http.StatusOK {
		t.Fatalf("close: %d %s", status, body)
	}
	l.stop()
	if got := stored(t, cfg.StatePath); len(got) != 0 {
		t.Fatalf("state file: %+v, want empty", got)
	}
}

// TestRestoreBeyondMaxPorts: a limit lowered below the stored ports drops
// none of them; it is logged, and /open refuses new ones.
func TestRestoreBeyondMaxPorts(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	first := launch(t, cfg)
	connectorConn(t, f, first.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-1") })
	for range 2 {
		spec := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "db.internal", ConnectPort: 5432}
		if status, body := httpDo(t, http.MethodPost, first.api+"/open", "", openBody(spec)); status != http.StatusOK {
			t.Fatalf("open: %d %s", status, body)
		}
	}
	first.stop()

	cfg.MaxPorts = 1
	second := launch(t, cfg)
	if got := second.listPorts(t); len(got) != 2 {
		t.Fatalf("list after a restart with SWL_MAX_PORTS=1: %+v, want both stored ports", got)
	}
	if !testutil.Logged(second.logs, "more ports restored than SWL_MAX_PORTS allows; /open refuses new ones until some are closed", "max_ports", "1") {
		t.Error("the exceeded limit is not logged")
	}
	connectorConn(t, f, second.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return second.Connected("swc-1") })
	spec := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "db.internal", ConnectPort: 5432}
	if status, body := httpDo(t, http.MethodPost, second.api+"/open", "", openBody(spec)); status != http.StatusConflict {
		t.Fatalf("open beyond the limit: %d %s, want 409", status, body)
	}
}
