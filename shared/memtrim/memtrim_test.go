package memtrim

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

func TestTrimsAfterBurstOnly(t *testing.T) {
	var tr Trimmer
	now := time.Unix(1_000_000, 0)
	step := func(goroutines int) bool { now = now.Add(Interval); return tr.Observe(now, goroutines) }

	for _, n := range []int{10, 100, 200, 100, 10} {
		if step(n) {
			t.Fatalf("trimmed at %d goroutines after a peak below %d", n, minPeak)
		}
	}
	if step(2000) || step(1000) || step(501) {
		t.Fatal("trimmed while the load is still above a quarter of its peak")
	}
	if !step(400) {
		t.Fatal("no trim when the load fell to a fifth of its peak")
	}
	// The next burst within minGap waits for the gap.
	if step(2000) || step(10) {
		t.Fatal("trimmed twice within minGap")
	}
	now = now.Add(minGap)
	if !step(10) {
		t.Fatal("no trim once minGap has passed")
	}
	if step(10) {
		t.Fatal("trimmed again without a new burst")
	}
}

func TestRunEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, zap.NewNop()) }()
	cancel()
	<-done
}
