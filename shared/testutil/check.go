package testutil

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// eventuallyLimit is Eventually's safety net: a bug fails the test instead of
// hanging it. No test measures anything with it.
const eventuallyLimit = 30 * time.Second

// Eventually polls cond every 10ms until it holds, and fails the test if it
// still does not after a generous safety deadline.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventuallyLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WantErr fails the test unless err is an error whose text contains every
// one of parts.
func WantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %q", err, p)
		}
	}
}

// IsTimeout reports whether err is a deadline or timeout error.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
