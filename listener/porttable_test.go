package listener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/listener/store"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

// slowStore holds each write (Put, Delete) of one port until the test lets
// it go, as a disk that takes its time to sync would.
type slowStore struct {
	store.Store
	hold    int
	held    chan struct{} // a write of hold arrived, and waits
	release chan struct{} // lets one go
	done    chan struct{} // closed: all go
}

func newSlowStore(t *testing.T, hold int) *slowStore {
	s := &slowStore{hold: hold, held: make(chan struct{}, 1), release: make(chan struct{}), done: make(chan struct{})}
	// Before the listener stops (cleanups run last first).
	t.Cleanup(func() { close(s.done) })
	return s
}

func (s *slowStore) wait(n int) {
	if n != s.hold {
		return
	}
	select {
	case s.held <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-s.done:
	}
}

// letGo lets the held write go on.
func (s *slowStore) letGo() { s.release <- struct{}{} }

func (s *slowStore) Put(p port.Spec) error {
	s.wait(p.Port)
	return s.Store.Put(p)
}

func (s *slowStore) Delete(n int) error {
	s.wait(n)
	return s.Store.Delete(n)
}

// answer is what a request got, sent back by the goroutine that made it.
type answer struct {
	status int
	body   string
	err    error
}

// oneShot is request's client. Without keep-alives: requests made at once
// make the transport dial connections it may end up not using, which the
// API server's Shutdown leaves open while they are young, and which would
// outlive the test.
var oneShot = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// request makes one API request on a goroutine of its own, so that a test
// can wait for its answer or fail instead of hanging with it.
func request(method, url, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			ch <- answer{err: err}
			return
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := oneShot.Do(req)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- answer{resp.StatusCode, strings.TrimSpace(string(b)), err}
	}()
	return ch
}

// await is the answer of a request, which must come before safety runs
// out: what stands for "never" here.
func await(t *testing.T, what string, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("%s: %v", what, a.err)
		}
		return a
	case <-time.After(safety):
		t.Fatalf("%s: no answer while a state file write of another request is held up", what)
		return answer{}
	}
}

// readersAnswer checks that GET /list, /readyz and a metrics scrape answer
// while a state file write is held up, showing want as served.
func readersAnswer(t *testing.T, l *launched, want []port.Spec) {
	t.Helper()
	list, ready := request(http.MethodGet, l.api+"/list", ""), request(http.MethodGet, l.api+"/readyz", "")
	scrape := make(chan error, 1)
	go func() {
		fams, err := l.Metrics().Gather()
		for _, f := range fams {
			if f.GetName() == "socketwarp_listener_ports" {
				if n := f.GetMetric()[0].GetGauge().GetValue(); int(n) != len(want) {
					err = fmt.Errorf("socketwarp_listener_ports %v, want %d", n, len(want))
				}
			}
		}
		scrape <- err
	}()
	a := await(t, "GET /list", list)
	var listed []port.Spec
	if err := json.Unmarshal([]byte(a.body), &listed); a.status != http.StatusOK || err != nil || !reflect.DeepEqual(listed, want) {
		t.Fatalf("GET /list: %d %s, want %+v", a.status, a.body, want)
	}
	if a := await(t, "GET /readyz", ready); a.status != http.StatusOK {
		t.Fatalf("GET /readyz: %d %s", a.status, a.body)
	}
	select {
	case err := <-scrape:
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
	case <-time.After(safety):
		t.Fatal("scrape: no answer while a state file write of another request is held up")
	}
}

// TestSlowStateFileHoldsUpNoReader: while the state file write of an open
// or a close is held up, as on a slow disk, GET /list, /readyz, a metrics
// scrape and the opens and closes of other ports answer at once. The held
// request answers when its write is done, and a second one for the same
// port waits for it and answers as it would have after it: 409 already
// open, 404 not open.
func TestSlowStateFileHoldsUpNoReader(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	slow := newSlowStore(t, testutil.FreePort(t))
	l := launch(t, cfg, func(l *Listener) { slow.Store, l.store = l.store, slow })
	connectorConn(t, f, l.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	other := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "db.internal", ConnectPort: 5432}
	if a := await(t, "open", request(http.MethodPost, l.api+"/open", openBody(other))); a.status != http.StatusOK {
		t.Fatalf("open: %d %s", a.status, a.body)
	}

	held := port.Spec{UID: "swc-1", Port: slow.hold, ConnectAddress: "db.internal", ConnectPort: 5432}
	heldOpen := request(http.MethodPost, l.api+"/open", openBody(held))
	select {
	case <-slow.held:
	case a := <-heldOpen:
		t.Fatalf("open answered %d %s before its state file write", a.status, a.body)
	}
	readersAnswer(t, l, []port.Spec{other}) // not yet the one being opened
	if a := await(t, "close of another port", request(http.MethodDelete, l.api+"/close", closeBody(other.Port))); a.status != http.StatusOK {
		t.Fatalf("close of another port: %d %s", a.status, a.body)
	}
	secondOpen := request(http.MethodPost, l.api+"/open", openBody(held))
	testutil.Eventually(t, "the second open waits for the first", func() bool { return l.ports.waiters() == 1 })
	slow.letGo()
	if a := await(t, "the held open", heldOpen); a.status != http.StatusOK {
		t.Fatalf("the held open: %d %s", a.status, a.body)
	}
	if a := await(t, "a second open of the port", secondOpen); a.status != http.StatusConflict || !strings.Contains(a.body, "already open") {
		t.Fatalf("a second open of the port: %d %s, want 409 already open", a.status, a.body)
	}

	heldClose := request(http.MethodDelete, l.api+"/close", closeBody(held.Port))
	select {
	case <-slow.held:
	case a := <-heldClose:
		t.Fatalf("close answered %d %s before its state file write", a.status, a.body)
	}
	readersAnswer(t, l, []port.Spec{held}) // still served
	secondClose := request(http.MethodDelete, l.api+"/close", closeBody(held.Port))
	testutil.Eventually(t, "the second close waits for the first", func() bool { return l.ports.waiters() == 1 })
	slow.letGo()
	if a := await(t, "the held close", heldClose); a.status != http.StatusOK {
		t.Fatalf("the held close: %d %s", a.status, a.body)
	}
	if a := await(t, "a second close of the port", secondClose); a.status != http.StatusNotFound || !strings.Contains(a.body, "not open") {
		t.Fatalf("a second close of the port: %d %s, want 404 not open", a.status, a.body)
	}
	expectFree(t, "tcp", held.Port)
	if got := l.listPorts(t); len(got) != 0 {
		t.Fatalf("list: %+v, want none", got)
	}
}

// waiters is how many opens and closes wait for one of the same port.
func (t *portTable) waiters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waiting
}

// reserveAsync runs a reservation on a goroutine of its own.
func reserveAsync(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func awaitErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(safety):
		t.Fatalf("%s: never returned", what)
		return nil
	}
}

// TestPortTableTakesTurns: an open or close of a port with one under way
// waits for its outcome and then answers as if they had taken turns; so
// does an open at SWL_MAX_PORTS while an open under way may yet leave room.
// Stopping waits for those under way and refuses the rest.
func TestPortTableTakesTurns(t *testing.T) {
	ctx := t.Context()
	bind := func(n int) *binding { return &binding{spec: port.Spec{Port: n}} }
	open := func(tab *portTable, n int) <-chan error {
		return reserveAsync(func() error { _, err := tab.reserveOpen(ctx, n); return err })
	}
	closing := func(tab *portTable, n int) <-chan error {
		return reserveAsync(func() error { _, _, err := tab.reserveClose(ctx, n); return err })
	}
	waits := func(tab *portTable, n int) {
		t.Helper()
		testutil.Eventually(t, fmt.Sprintf("%d waiting", n), func() bool { return tab.waiters() == n })
	}
	started := func(max int) *portTable {
		tab := newPortTable(max)
		if _, err := tab.reserveOpen(ctx, 1); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("open before start: %v, want %v", err, ErrShuttingDown)
		}
		tab.start(ctx, map[int]*binding{}, map[int]failedPort{})
		return tab
	}

	t.Run("open after open", func(t *testing.T) {
		tab := started(0)
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		second := open(tab, 1)
		waits(tab, 1)
		tab.abortOpen(1) // the first failed: the second goes ahead
		if err := awaitErr(t, "second open", second); err != nil {
			t.Fatalf("second open after a failed first: %v", err)
		}
		third := open(tab, 1)
		waits(tab, 1)
		tab.commitOpen(bind(1))
		if err := awaitErr(t, "third open", third); !errors.Is(err, port.ErrAlreadyOpen) {
			t.Fatalf("open after a committed one: %v, want %v", err, port.ErrAlreadyOpen)
		}
	})

	t.Run("close during open and close", func(t *testing.T) {
		tab := started(0)
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		c := closing(tab, 1)
		waits(tab, 1)
		tab.abortOpen(1)
		if err := awaitErr(t, "close", c); !errors.Is(err, port.ErrNotOpen) {
			t.Fatalf("close after a failed open: %v, want %v", err, port.ErrNotOpen)
		}
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		tab.commitOpen(bind(1))
		if _, _, err := tab.reserveClose(ctx, 1); err != nil {
			t.Fatal(err)
		}
		reopen := open(tab, 1)
		waits(tab, 1)
		tab.abortClose(1) // the state file write failed: still open
		if err := awaitErr(t, "reopen", reopen); !errors.Is(err, port.ErrAlreadyOpen) {
			t.Fatalf("open after a failed close: %v, want %v", err, port.ErrAlreadyOpen)
		}
		if _, _, err := tab.reserveClose(ctx, 1); err != nil {
			t.Fatal(err)
		}
		second := closing(tab, 1)
		waits(tab, 1)
		tab.commitClose(1)
		if err := awaitErr(t, "second close", second); !errors.Is(err, port.ErrNotOpen) {
			t.Fatalf("close after a close: %v, want %v", err, port.ErrNotOpen)
		}
		if tab.get(1) != nil {
			t.Fatal("closed port still bound")
		}
	})

	t.Run("limit", func(t *testing.T) {
		tab := started(1)
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		other := open(tab, 2)
		waits(tab, 1)
		tab.abortOpen(1) // room after all
		if err := awaitErr(t, "open of another port", other); err != nil {
			t.Fatalf("open after a failed one at the limit: %v", err)
		}
		tab.commitOpen(bind(2))
		if _, err := tab.reserveOpen(ctx, 3); !errors.Is(err, port.ErrLimit) {
			t.Fatalf("open beyond the limit: %v, want %v", err, port.ErrLimit)
		}
	})

	t.Run("cancelled wait", func(t *testing.T) {
		tab := started(0)
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		second := reserveAsync(func() error { _, err := tab.reserveOpen(wctx, 1); return err })
		waits(tab, 1)
		cancel()
		if err := awaitErr(t, "second open", second); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled open: %v, want %v", err, context.Canceled)
		}
		waits(tab, 0)
		tab.abortOpen(1)
	})

	t.Run("stop", func(t *testing.T) {
		tab := started(0)
		if _, err := tab.reserveOpen(ctx, 1); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan map[int]*binding, 1)
		go func() { stopped <- tab.stop() }()
		waits(tab, 1)
		if _, err := tab.reserveOpen(ctx, 2); !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("open while stopping: %v, want %v", err, ErrShuttingDown)
		}
		b := bind(1)
		tab.commitOpen(b)
		select {
		case got := <-stopped:
			if len(got) != 1 || got[1] != b {
				t.Fatalf("stop handed over %v, want the port opened meanwhile", got)
			}
		case <-time.After(safety):
			t.Fatal("stop never returned")
		}
		if _, _, err := tab.reserveClose(ctx, 1); !errors.Is(err, port.ErrNotOpen) {
			t.Fatalf("close after stop: %v, want %v", err, port.ErrNotOpen)
		}
		if _, _, err := tab.view(); err == nil {
			t.Fatal("a stopped table has ports to serve")
		}
	})
}
