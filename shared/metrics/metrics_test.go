package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	log, _ := testutil.Logger(t, "metrics")
	var ready atomic.Bool
	s, err := Listen("SWX_METRICS_ADDR", "127.0.0.1:0", NewRegistry(), func() error {
		if !ready.Load() {
			return errors.New("not connected")
		}
		return nil
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr().String()

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected") {
		t.Errorf("/readyz while not ready: %d %s", code, body)
	}
	ready.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready: %d %s", code, body)
	}
	if code, body := get(t, base+"/nope"); code != http.StatusNotFound || !strings.Contains(body, "/metrics") {
		t.Errorf("/nope: %d %s", code, body)
	}
	m := testutil.Scrape(t, base+"/metrics", "")
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if _, ok := m.Value(name); !ok {
			t.Errorf("%s missing from the scrape", name)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("still serving after Serve returned")
	}
}

func TestListenTakenAddress(t *testing.T) {
	log, _ := testutil.Logger(t, "metrics")
	s, err := Listen("SWX_METRICS_ADDR", "127.0.0.1:0", NewRegistry(), func() error { return nil }, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Listen("SWX_METRICS_ADDR", s.Addr().String(), NewRegistry(), func() error { return nil }, log)
	testutil.WantErr(t, err, "SWX_METRICS_ADDR", s.Addr().String())
}
