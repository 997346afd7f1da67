package listener

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// killSocket shuts the listening socket of port down underneath the
// listener (shutdown(2) on its descriptor): the socket stops listening
// for good, as after a failure the listener did not cause.
func killSocket(t *testing.T, l *Listener, port int) {
	t.Helper()
	ln := l.ports.get(port).socks[0].listener()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var shutErr error
	if err := rc.Control(func(fd uintptr) { shutErr = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) }); err != nil {
		t.Fatal(err)
	}
	if shutErr != nil {
		t.Fatalf("shutdown: %v", shutErr)
	}
}

// TestDeadPortSocketIsBoundAnew: an opened port whose listening socket dies
// says so — GET /list gives the port an error (with its live figures: its
// tunnels go on), /readyz answers 503 naming the port, the metrics count it
// down — and the listener binds it anew on its own, retrying while the
// address is taken, until the port accepts clients again.
func TestDeadPortSocketIsBoundAnew(t *testing.T) {
	f := newFiles(t)
	type down struct {
		held *net.TCPListener
		err  error
	}
	downs := make(chan down, 1)
	l := launch(t, f.config(), func(l *Listener) {
		l.portDownHook = func(port int) {
			// The dead socket is closed: take its address, so that
			// the first attempts to bind it anew fail, as they would
			// with another program on it.
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			downs <- down{ln, err}
		}
	})
	playConnector(t, connectorConn(t, f, l.Listener, "swc-1"), wire.VerdictOK)
	testutil.Eventually(t, "connector bound", func() bool { return l.Connected("swc-1") })
	spec := port.Spec{UID: "swc-1", Port: testutil.FreePort(t), ConnectAddress: "echo.internal", ConnectPort: 7}
	if status, body := httpDo(t, http.MethodPost, l.api+"/open", "", openBody(spec)); status != http.StatusOK {
		t.Fatalf("open: %d %s", status, body)
	}
	tunnel := dial(t, spec.Port)
	echoVia(t, tunnel, "before")
	metrics := func() testutil.Metrics { return testutil.Scrape(t, l.api+"/metrics", "") }
	value := func(m testutil.Metrics, name string, labels ...string) float64 {
		t.Helper()
		v, ok := m.Value(name, labels...)
		if !ok {
			t.Fatalf("no metric %s %v:\n%s", name, labels, m)
		}
		return v
	}

	killSocket(t, l.Listener, spec.Port)
	var d down
	select {
	case d = <-downs:
	case <-time.After(safety):
		t.Fatal("the dead socket was not noticed")
	}
	if d.err != nil {
		t.Fatalf("the port of the dead socket is still taken: %v", d.err)
	}
	wantErr := fmt.Sprintf("listener died: accept tcp 127.0.0.1:%d: ", spec.Port)
	var listed port.Spec
	testutil.Eventually(t, "a failed attempt to bind it anew listed", func() bool {
		listed = l.listPorts(t)[0]
		return strings.Contains(listed.Error, "address already in use")
	})
	if !strings.HasPrefix(listed.Error, wantErr) || !strings.Contains(listed.Error, "; re-binding: listen tcp") {
		t.Fatalf("listed error %q, want %q… re-binding: listen tcp …", listed.Error, wantErr)
	}
	if _, body := httpDo(t, http.MethodGet, l.api+"/list", "", ""); !strings.Contains(body, `"active_connections":1`) {
		t.Errorf("list of the port while it is bound anew: %s, want its live figures", body)
	}
	status, body := httpDo(t, http.MethodGet, l.api+"/readyz", "", "")
	if want := fmt.Sprintf("not ready: port %d: %s", spec.Port, wantErr); status != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Fatalf("readyz: %d %s, want 503 %q…", status, body, want)
	}
	m := metrics()
	if value(m, "socketwarp_listener_ports") != 0 || value(m, "socketwarp_listener_ports_down") != 1 ||
		value(m, "socketwarp_listener_accept_errors_total", "kind", "died") != 1 ||
		value(m, "socketwarp_listener_port_rebinds_total") != 0 {
		t.Fatalf("metrics while the port is down:\n%s", m)
	}
	echoVia(t, tunnel, "while it is down") // its tunnels go on

	d.held.Close()
	testutil.Eventually(t, "the port bound anew", func() bool { return l.listPorts(t)[0].Error == "" })
	if status, body := httpDo(t, http.MethodGet, l.api+"/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz once the port listens again: %d %s", status, body)
	}
	m = metrics()
	if value(m, "socketwarp_listener_ports") != 1 || value(m, "socketwarp_listener_ports_down") != 0 ||
		value(m, "socketwarp_listener_port_rebinds_total") != 1 ||
		value(m, "socketwarp_listener_accept_errors_total", "kind", "died") != 1 {
		t.Fatalf("metrics once the port listens again:\n%s", m)
	}
	echoVia(t, dial(t, spec.Port), "after")
	echoVia(t, tunnel, "still")

	// Closed while it is bound anew: the port closes, nothing binds it
	// later.
	killSocket(t, l.Listener, spec.Port)
	select {
	case d = <-downs:
	case <-time.After(safety):
		t.Fatal("the second dead socket was not noticed")
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	if status, body := httpDo(t, http.MethodDelete, l.api+"/close", "", closeBody(spec.Port)); status != http.StatusOK {
		t.Fatalf("close of a port being bound anew: %d %s", status, body)
	}
	d.held.Close()
	if status, body := httpDo(t, http.MethodGet, l.api+"/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz once the port is closed: %d %s", status, body)
	}
	if c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: spec.Port}); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a client of the closed port: %v, want connection refused", err)
	}
}
