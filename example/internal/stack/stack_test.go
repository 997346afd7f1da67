package stack

import (
	"os"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// The figures of this very process are there and plausible.
func TestProcFigures(t *testing.T) {
	pid := os.Getpid()
	rss, threads, err := ReadStatus(pid)
	if err != nil || rss <= 0 || threads <= 0 {
		t.Fatalf("ReadStatus: rss %d, threads %d, %v", rss, threads, err)
	}
	n, err := CountFDs(pid)
	if err != nil || n < 3 {
		t.Fatalf("CountFDs: %d, %v", n, err)
	}
	before, err := ReadCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the clock-tick counter moves.
	x := 0
	for after := before; after == before; after, _ = ReadCPU(pid) {
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
	after, _ := ReadCPU(pid)
	if after <= before || after > before+time.Hour {
		t.Fatalf("ReadCPU went from %s to %s", before, after)
	}
}
