// Package backoff spaces out retries: exponential, jittered so a fleet of
// connectors does not reconnect in lockstep after a listener restart, and
// capped so that a connector behind a flaky link, or a listener's port
// waiting for descriptors, keeps trying often enough.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is not safe for concurrent use; the loop that retries owns it.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a float in [0, 1); nil means math/rand.
	Rand    func() float64
	attempt int
}

// Next returns the delay before the next attempt: the nominal delay doubles
// from Min up to Max, and the result is drawn from [nominal/2, nominal).
func (b *Backoff) Next() time.Duration {
	nominal := b.Min
	for i := 0; i < b.attempt && nominal < b.Max; i++ {
		nominal *= 2
	}
	if nominal > b.Max {
		nominal = b.Max
	}
	b.attempt++
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	half := nominal / 2
	return half + time.Duration(r()*float64(nominal-half))
}

// Reset starts again from Min, after a connection proved healthy.
func (b *Backoff) Reset() { b.attempt = 0 }
