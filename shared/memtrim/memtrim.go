// Package memtrim gives memory back to the system after a burst of tunnels.
//
// The Go runtime returns freed heap lazily: an idle daemon collects garbage
// only every two minutes and then scavenges gradually, so after a thousand
// tunnels end RSS stays near its peak for minutes. Operators read that as a
// leak. The daemons' load shows in their goroutine count (each tunnel runs
// two), so when it falls to a quarter of its recent peak the trimmer runs a
// collection and returns the freed pages at once.
package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

const (
	// Interval is how often the load is looked at.
	Interval = 5 * time.Second
	// minPeak ignores small swings: a few hundred goroutines hold little.
	minPeak = 256
	// minGap bounds the cost under churn: at most one forced collection
	// per minGap.
	minGap = time.Minute
)

// Trimmer decides when to trim from successive goroutine counts.
type Trimmer struct {
	peak int
	last time.Time
}

// Observe takes the current goroutine count and says whether to trim now.
func (t *Trimmer) Observe(now time.Time, goroutines int) bool {
	t.peak = max(t.peak, goroutines)
	if t.peak < minPeak || goroutines > t.peak/4 || now.Sub(t.last) < minGap {
		return false
	}
	t.peak, t.last = goroutines, now
	return true
}

// Run trims after bursts until ctx ends.
func Run(ctx context.Context, log *zap.Logger) {
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	var t Trimmer
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n := runtime.NumGoroutine()
			if !t.Observe(now, n) {
				continue
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			debug.FreeOSMemory()
			runtime.ReadMemStats(&after)
			log.Debug("memory returned to the system after a burst",
				zap.Int("goroutines", n),
				zap.Uint64("heap_released_bytes", after.HeapReleased-min(before.HeapReleased, after.HeapReleased)))
		}
	}
}
