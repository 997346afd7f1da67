package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// runDemo runs example/demo/demo.sh with the built binaries on free ports
// (apiPort given) and returns its exit code and output. guard only ends a
// demo that hangs, so that the test fails instead of stalling.
func runDemo(t *testing.T, apiPort int, guard time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../demo/demo.sh")
	cmd.Env = append(os.Environ(), "BIN="+binDir, "TMPDIR="+t.TempDir(),
		fmt.Sprintf("DEMO_API_PORT=%d", apiPort),
		fmt.Sprintf("DEMO_QUIC_PORT=%d", testutil.FreeUDPPort(t)),
		fmt.Sprintf("DEMO_TUNNEL_PORT=%d", testutil.FreePort(t)),
		fmt.Sprintf("DEMO_ECHO_PORT=%d", testutil.FreePort(t)))
	// The script and the daemons it starts share a process group: a demo
	// past its guard goes down whole, not leaving a curl holding the pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("demo.sh still running after %v; output:\n%s", guard, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("demo.sh: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestDemo: the demo runs to its end on free ports.
func TestDemo(t *testing.T) {
	code, out := runDemo(t, testutil.FreePort(t), 2*time.Minute)
	if code != 0 || !strings.Contains(out, "demo OK") {
		t.Fatalf("demo.sh exit %d, output:\n%s", code, out)
	}
}

// TestDemoNoticesDeadListener: with the API port held by a socket that never
// answers, sw-listener exits at once; the demo must stop too, non-zero,
// with the listener's own error as its first word on the matter, instead of
// waiting on a curl that cannot be answered and blaming what comes after.
func TestDemoNoticesDeadListener(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, out := runDemo(t, held.Addr().(*net.TCPAddr).Port, time.Minute)
	if code == 0 {
		t.Fatalf("demo.sh exit 0 with its API port taken; output:\n%s", out)
	}
	// The first line about the failure is the listener's reason, before the
	// daemon logs are dumped.
	var first string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "address already in use") || strings.Contains(line, "--- demo failed") {
			first = line
			break
		}
	}
	if !strings.Contains(first, "sw-listener exited") || !strings.Contains(first, "address already in use") {
		t.Fatalf("the demo does not lead with the listener's error (first: %q); output:\n%s", first, out)
	}
}
