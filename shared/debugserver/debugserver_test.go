package debugserver

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:6060", "[::1]:0", "localhost:6060", "127.0.0.2:1"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", "10.0.0.1:6060", "[::]:6060", "example.com:6060", "127.0.0.1", ":6060"} {
		testutil.WantErr(t, CheckAddr(bad), bad)
	}
	_, err := Listen("0.0.0.0:0", zap.NewNop())
	testutil.WantErr(t, err, "not a loopback address")
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// A running server answers the goroutine profile, and a CPU profile in
// progress ends with the server rather than keeping Run waiting.
func TestServeAndStop(t *testing.T) {
	s, err := Listen("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	base := "http://" + s.Addr().String()

	if body := get(t, base+"/debug/pprof/goroutine?debug=1"); !strings.HasPrefix(body, "goroutine profile: total ") {
		t.Fatalf("goroutine profile starts %q", body[:min(len(body), 40)])
	}
	profiling := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/debug/pprof/profile?seconds=3600")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		profiling <- err
	}()
	testutil.Eventually(t, "the CPU profile is running", func() bool {
		return strings.Contains(get(t, base+"/debug/pprof/goroutine?debug=1"), "pprof.Profile")
	})
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-profiling // ended (answered or cut), not after an hour
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Fatal("still serving after Run returned")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestListenTaken(t *testing.T) {
	s, err := Listen("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Listen(s.Addr().String(), zap.NewNop())
	testutil.WantErr(t, err, "listen for pprof on tcp "+s.Addr().String())
}
