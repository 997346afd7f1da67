package filewatch_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/filewatch"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

const safety = 20 * time.Second // a bound for what should take milliseconds

// start runs filewatch.Run until the test ends and returns a channel that
// receives every call of changed, with what the file held then.
func start(t *testing.T, path string, opts filewatch.Options) <-chan string {
	t.Helper()
	calls := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		filewatch.Run(ctx, []string{path}, opts, func() {
			b, _ := os.ReadFile(path)
			calls <- string(b)
		})
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return calls
}

func wantCall(t *testing.T, calls <-chan string, want, what string) {
	t.Helper()
	deadline := time.After(safety)
	for {
		select {
		case got := <-calls:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no call that saw %q", what, want)
		}
	}
}

// writeAtomic replaces path the way tools do: a new file renamed over it.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Run calls at its start, then after a file is replaced and after it is
// created, from file events alone.
func TestRunCallsOnEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	calls := start(t, path, filewatch.Options{Poll: -1})
	wantCall(t, calls, "", "the call at start (no file yet)")
	writeAtomic(t, path, "one")
	wantCall(t, calls, "one", "after the file was created")
	writeAtomic(t, path, "two")
	wantCall(t, calls, "two", "after the file was replaced")
	if err := os.WriteFile(path, []byte("three"), 0o600); err != nil { // written in place
		t.Fatal(err)
	}
	wantCall(t, calls, "three", "after the file was written in place")
}

// Polling finds a change no event reports: the file is a symlink into a
// directory that is not watched.
func TestRunPollsWhereNoEventComes(t *testing.T) {
	target := filepath.Join(t.TempDir(), "real")
	writeAtomic(t, target, "one")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	calls := start(t, link, filewatch.Options{Poll: 10 * time.Millisecond})
	wantCall(t, calls, "one", "the call at start")
	writeAtomic(t, target, "two")
	wantCall(t, calls, "two", "the call found by polling")
}
