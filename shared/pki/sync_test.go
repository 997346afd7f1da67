package pki_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// TestWriteFileAtomicSyncsDirectory: after the rename, WriteFileAtomic
// syncs the directory, without which a power loss right after can undo the
// rename — and lose a key written at first start, while the daemon already
// uses it. A page cache hides whether it did, so strace watches the system
// calls of a child that writes: the test binary itself, run for this test
// with WRITE_FILE_ATOMIC_PATH set.
func TestWriteFileAtomicSyncsDirectory(t *testing.T) {
	if path := os.Getenv("WRITE_FILE_ATOMIC_PATH"); path != "" {
		if err := pki.WriteFileAtomic(path, []byte("key"), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-y", "-o", trace, "-e", "trace=rename,renameat,renameat2,fsync,fdatasync", "-e", "signal=none",
		os.Args[0], "-test.run=^TestWriteFileAtomicSyncsDirectory$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WRITE_FILE_ATOMIC_PATH="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	renamed := false
	syncs := regexp.MustCompile(`f(data)?sync\(\d+<` + regexp.QuoteMeta(dir) + `>\) = 0`)
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case strings.Contains(line, "rename") && strings.Contains(line, `"`+path+`"`):
			renamed = true
		case renamed && syncs.MatchString(line):
			return
		}
	}
	t.Fatalf("renamed: %v; no sync of %s after the rename:\n%s", renamed, dir, b)
}
