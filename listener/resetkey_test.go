package listener

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// TestCrashedListenerResetsOldConnections: a listener that died without a
// word (its socket closed, no CONNECTION_CLOSE sent) and was started again
// on the same state file and port answers a heartbeat of the old
// connection with a stateless reset: the key, made 0600 beside the state
// file at the first start, is the same.
func TestCrashedListenerResetsOldConnections(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	cfg.Port = testutil.FreeUDPPort(t)
	first := launch(t, cfg)
	keyPath := resetKeyPath(cfg.StatePath)
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 || len(key) != 32 {
		t.Fatalf("reset key %s: %v, %d bytes, %v; want 0600 and 32 bytes", keyPath, fi.Mode(), len(key), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	conn := testutil.QUICDial(t, ctx, first.QUICAddrs()[0], f.pki.ClientTLS(t, "swc-1"),
		&quic.Config{EnableDatagrams: true, MaxIncomingUniStreams: -1})
	testutil.Eventually(t, "connector bound", func() bool { return first.Connected("swc-1") })

	// The crash: nothing can leave the socket any more.
	for _, tr := range first.transports {
		tr.Conn.Close()
	}
	first.stop()
	second := launch(t, cfg)
	if again, _ := os.ReadFile(keyPath); string(again) != string(key) {
		t.Fatal("the restarted listener replaced the reset key")
	}
	if err := conn.SendDatagram(make([]byte, wire.HeartbeatLen)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the restarted listener did not reset the old connection")
	}
	var reset *quic.StatelessResetError
	if err := context.Cause(conn.Context()); !errors.As(err, &reset) {
		t.Fatalf("old connection ended with %v, want a stateless reset", err)
	}
	second.stop()
}

// TestBadResetKeyRefused: a key file New cannot use stops it with one error
// naming the file (a new key would silently cost every connector its quick
// recovery), New releases what it bound, and check-config says so too.
func TestBadResetKeyRefused(t *testing.T) {
	f := newFiles(t)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
		want  []string
	}{
		{"wrong size", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"has 6 bytes, not 32", "remove it"}},
		{"unreadable", func(t *testing.T, path string) {
			// Root reads any file whatever its mode; a directory it cannot.
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a directory"}},
		// Read as a file, a named pipe waits for a writer for ever, and
		// a device like /dev/zero never ends.
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a named pipe, not a regular file"}},
		{"device", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a device, not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			cfg.Port, cfg.APIPort = testutil.FreeUDPPort(t), testutil.FreePort(t)
			path := resetKeyPath(cfg.StatePath)
			tc.write(t, path)
			l, err := New(cfg, zap.NewNop())
			if l != nil {
				t.Fatal("New returned a listener along with an error")
			}
			testutil.WantErr(t, err, append([]string{"SWL_STATE_PATH", "stateless reset key", path}, tc.want...)...)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
			expectFree(t, "udp", cfg.Port)
			expectFree(t, "tcp", cfg.APIPort)
			if p := CheckConfig(cfg).Problems; len(p) != 1 || !strings.Contains(p[0], path) {
				t.Errorf("check-config problems: %q, want one naming %s", p, path)
			}
		})
	}
}

// TestExposedResetKeyWarned: a key file that group or others may read is
// used all the same — refusing to start would cost every tunnel for a key
// that only lets an on-path reader end connections — but start and
// check-config say so, naming the file and the fix.
func TestExposedResetKeyWarned(t *testing.T) {
	f := newFiles(t)
	cfg := f.config()
	path := resetKeyPath(cfg.StatePath)
	key := []byte(strings.Repeat("k", 32))
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if w := CheckConfig(cfg).Warnings; len(w) != 1 || !strings.Contains(w[0], path) || !strings.Contains(w[0], "chmod 600") {
		t.Errorf("check-config warnings: %q, want one naming %s and the fix", w, path)
	}
	r := run(t, cfg)
	if !testutil.Logged(r.logs, "stateless reset key is open to group or others: chmod 600 it", "path", path) {
		t.Error("no warning at start naming the key file")
	}
	if again, _ := os.ReadFile(path); string(again) != string(key) {
		t.Fatal("the key was replaced")
	}
}
