package listener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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

func (s *slowStore) Put(ctx context.Context, p port.Spec, prev int64) (int64, error) {
	s.wait(p.Port)
	return s.Store.Put(ctx, p, prev)
}

func (s *slowStore) Delete(ctx context.Context, n int, prev int64) (port.Spec, int64, error) {
	s.wait(n)
	return s.Store.Delete(ctx, n, prev)
}

// heldWrite waits until a write of the held port waits, or fails if a
// request answers first.
func (s *slowStore) heldWrite(t *testing.T, what string, answers ...<-chan answer) {
	t.Helper()
	for _, ch := range answers {
		select {
		case a := <-ch:
			t.Fatalf("%s: a request answered %d %s before its state file write", what, a.status, a.body)
		default:
		}
	}
	select {
	case <-s.held:
	case <-time.After(safety):
		t.Fatalf("%s: no state file write held", what)
	}
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
// scrape and the opens and closes of other ports answer at once. A held
// request answers when its write is done; of two opens of one port one
// opens it and the other is told it is already open (409), of two closes
// one closes it and the other is told it is not open (404).
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
	opens := []<-chan answer{request(http.MethodPost, l.api+"/open", openBody(held))}
	slow.heldWrite(t, "open", opens...)
	readersAnswer(t, l, []port.Spec{other}) // not yet the one being opened
	if a := await(t, "close of another port", request(http.MethodDelete, l.api+"/close", closeBody(other.Port))); a.status != http.StatusOK {
		t.Fatalf("close of another port: %d %s", a.status, a.body)
	}
	opens = append(opens, request(http.MethodPost, l.api+"/open", openBody(held)))
	slow.heldWrite(t, "second open", opens...)
	slow.letGo()
	slow.letGo()
	wantOneOf(t, "two opens of one port", opens, http.StatusOK, http.StatusConflict, "already open")

	closes := []<-chan answer{request(http.MethodDelete, l.api+"/close", closeBody(held.Port))}
	slow.heldWrite(t, "close", closes...)
	readersAnswer(t, l, []port.Spec{held}) // still served
	closes = append(closes, request(http.MethodDelete, l.api+"/close", closeBody(held.Port)))
	slow.heldWrite(t, "second close", closes...)
	slow.letGo()
	slow.letGo()
	wantOneOf(t, "two closes of one port", closes, http.StatusOK, http.StatusNotFound, "not open")
	expectFree(t, "tcp", held.Port)
	if got := l.listPorts(t); len(got) != 0 {
		t.Fatalf("list: %+v, want none", got)
	}
}

// wantOneOf checks that of two requests, one got ok and the other
// refused, its body saying why.
func wantOneOf(t *testing.T, what string, reqs []<-chan answer, ok, refused int, why string) {
	t.Helper()
	a, b := await(t, what, reqs[0]), await(t, what, reqs[1])
	if a.status != ok {
		a, b = b, a
	}
	if a.status != ok || b.status != refused || !strings.Contains(b.body, why) {
		t.Fatalf("%s: %d %s and %d %s, want one %d and one %d %s", what, a.status, a.body, b.status, b.body, ok, refused, why)
	}
}

// TestPortTableAdmit: an open is refused before it is written when the
// port is served already, at SWL_MAX_PORTS (opens under way count), and
// before start or after stop; a port listed with an error is replaced,
// the open naming the revision it replaces.
func TestPortTableAdmit(t *testing.T) {
	tab := newPortTable(2)
	if _, _, err := tab.admit(1); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("open before start: %v, want %v", err, ErrShuttingDown)
	}
	tab.start(t.Context())
	tab.set(portEntry{spec: port.Spec{Port: 1}, rev: 3, b: &binding{}})
	if _, _, err := tab.admit(1); !errors.Is(err, port.ErrAlreadyOpen) {
		t.Fatalf("open of a served port: %v, want %v", err, port.ErrAlreadyOpen)
	}
	tab.set(portEntry{spec: port.Spec{Port: 2}, rev: 5, err: errors.New("refused by the stream header")})
	prev, done, err := tab.admit(2)
	if err != nil || prev != 5 {
		t.Fatalf("open of a port listed with an error: revision %d, %v; want 5, nil", prev, err)
	}
	if _, _, err := tab.admit(3); !errors.Is(err, port.ErrLimit) {
		t.Fatalf("open at the limit with one under way: %v, want %v", err, port.ErrLimit)
	}
	done()
	done() // once only
	_, done, err = tab.admit(3)
	if err != nil {
		t.Fatalf("open with room: %v", err)
	}
	done()
	if got := tab.stop(); len(got) != 1 {
		t.Fatalf("stop handed over %d bound ports, want 1", len(got))
	}
	if _, _, err := tab.admit(4); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("open after stop: %v, want %v", err, ErrShuttingDown)
	}
	if _, _, err := tab.view(); err == nil {
		t.Fatal("a stopped table has ports to serve")
	}
}

// TestOpenOfATakenAddress: an open this listener cannot bind answers 409
// naming the address in use and leaves nothing behind: not listed, not
// stored, not re-binding in the background; the same open works once the
// address is free.
func TestOpenOfATakenAddress(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	l := launch(t, cfg)
	connectorConn(t, f, l.Listener, "swc-1")
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spec := port.Spec{UID: "swc-1", Port: other.Addr().(*net.TCPAddr).Port, ConnectAddress: "db.internal", ConnectPort: 5432}
	a := await(t, "open", request(http.MethodPost, l.api+"/open", openBody(spec)))
	if a.status != http.StatusConflict || !strings.Contains(a.body, "address already in use") {
		t.Fatalf("open of a taken address: %d %s, want 409 address already in use", a.status, a.body)
	}
	if got := l.listPorts(t); len(got) != 0 {
		t.Fatalf("list: %+v, want none", got)
	}
	if snap, err := l.store.List(t.Context()); err != nil || len(snap.Ports) != 0 {
		t.Fatalf("stored: %+v, %v; want none", snap.Ports, err)
	}
	other.Close()
	// The answer came after the port was closed, its re-binding loop
	// included: nothing takes the address now it is free.
	expectFree(t, "tcp", spec.Port)
	if a := await(t, "open", request(http.MethodPost, l.api+"/open", openBody(spec))); a.status != http.StatusOK {
		t.Fatalf("open of the freed address: %d %s", a.status, a.body)
	}
	expectBound(t, spec.Port)
}
