package teardown

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// tunnels is a count with a ping on each end, as sw-connector keeps it.
type tunnels struct {
	n     atomic.Int64
	ended chan struct{}
}

func newTunnels(n int64) *tunnels {
	t := &tunnels{ended: make(chan struct{}, 1)}
	t.n.Store(n)
	return t
}

func (t *tunnels) end() {
	t.n.Add(-1)
	select {
	case t.ended <- struct{}{}:
	default:
	}
}

func (t *tunnels) drain(log *zap.Logger, timeout time.Duration, stop <-chan struct{}) Drain {
	return Drain{Log: log, Why: "test", Timeout: timeout, Stop: stop, Running: t.n.Load, Ended: t.ended}
}

func messages(logs *observer.ObservedLogs) []string {
	var m []string
	for _, e := range logs.All() {
		m = append(m, e.Message)
	}
	return m
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDrainEndsWhenTunnelsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		tun := newTunnels(2)
		start := time.Now()
		go func() {
			time.Sleep(time.Second)
			tun.end()
			time.Sleep(time.Second)
			tun.end()
		}()
		if !tun.drain(zap.New(core), time.Minute, nil).Run() {
			t.Fatal("not drained")
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("returned after %v, want when the last tunnel ended (2s)", d)
		}
		if m := messages(logs); !equal(m, []string{"draining", "drained"}) {
			t.Fatalf("log: %q", m)
		}
	})
}

func TestDrainBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		tun := newTunnels(1)
		ended := false
		d := tun.drain(zap.New(core), 5*time.Second, nil)
		d.End = func() { ended = true }
		start := time.Now()
		if d.Run() {
			t.Fatal("drained with a tunnel running")
		}
		if el := time.Since(start); el != 5*time.Second {
			t.Fatalf("returned after %v, want the bound", el)
		}
		if !ended {
			t.Fatal("End did not run")
		}
		if m := messages(logs); !equal(m, []string{"draining", "drain timeout, closing tunnels"}) {
			t.Fatalf("log: %q", m)
		}
		if n := logs.FilterMessage("drain timeout, closing tunnels").All()[0].ContextMap()["tunnels"]; n != int64(1) {
			t.Fatalf("tunnels left: %v", n)
		}
	})
}

func TestDrainStopIsQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		tun := newTunnels(1)
		stop := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(stop) })
		if tun.drain(zap.New(core), time.Minute, stop).Run() {
			t.Fatal("drained with a tunnel running")
		}
		if m := messages(logs); !equal(m, []string{"draining"}) {
			t.Fatalf("log: %q", m)
		}
	})
}

// The listener's form: Idle is a channel closed once everything ended, and
// End closes what is left before "drained".
func TestDrainIdleAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		done := make(chan struct{})
		var order []string
		d := Drain{
			Log: zap.New(core), Timeout: time.Minute, Running: func() int64 { return 0 }, Ended: done,
			Idle: func() bool {
				select {
				case <-done:
					return true
				default:
					return false
				}
			},
			End: func() { order = append(order, "end") },
		}
		time.AfterFunc(time.Second, func() { close(done) })
		start := time.Now()
		if !d.Run() {
			t.Fatal("not drained")
		}
		if el := time.Since(start); el != time.Second {
			t.Fatalf("returned after %v, want when idle (1s)", el)
		}
		if len(order) != 1 {
			t.Fatal("End did not run")
		}
		for _, e := range logs.All() {
			if _, ok := e.ContextMap()["reason"]; ok {
				t.Fatalf("%q has a reason without Why", e.Message)
			}
		}
	})
}

func TestLingerTime(t *testing.T) {
	for _, c := range []struct{ pto, want time.Duration }{
		{time.Millisecond, 50 * time.Millisecond},
		{100 * time.Millisecond, 200 * time.Millisecond},
		{time.Minute, time.Second},
	} {
		if got := LingerTime(c.pto); got != c.want {
			t.Errorf("LingerTime(%v) = %v, want %v", c.pto, got, c.want)
		}
	}
}

func TestLingerWithoutConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		Linger(nil)
		if el := time.Since(start); el != 0 {
			t.Fatalf("waited %v without a connection", el)
		}
	})
}
