package backoff

import (
	"testing"
	"time"
)

func TestNextDoublesUpToMaxWithinJitter(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		b := &Backoff{Min: time.Second, Max: 30 * time.Second, Rand: func() float64 { return r }}
		nominal := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
		for i, n := range nominal {
			n *= time.Second
			got := b.Next()
			if got < n/2 || got >= n {
				t.Fatalf("rand=%v attempt %d: delay %s outside [%s, %s)", r, i, got, n/2, n)
			}
		}
	}
}

func TestJitterSpreadsDelays(t *testing.T) {
	b1 := &Backoff{Min: time.Second, Max: 30 * time.Second, Rand: func() float64 { return 0 }}
	b2 := &Backoff{Min: time.Second, Max: 30 * time.Second, Rand: func() float64 { return 0.9 }}
	if b1.Next() == b2.Next() {
		t.Fatal("different random draws gave the same delay")
	}
}

func TestReset(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 30 * time.Second, Rand: func() float64 { return 0 }}
	for range 10 {
		b.Next()
	}
	b.Reset()
	if got := b.Next(); got != 500*time.Millisecond {
		t.Fatalf("after Reset: %s, want 500ms", got)
	}
}
