package relay

import (
	"runtime"
	"testing"
)

// SetUp runs the set-up on another goroutine and hands back what it
// appended to what the tunnel carries on with.
func TestSetUp(t *testing.T) {
	caller := goroutineID()
	carry := make([]string, 1, 4)
	carry[0] = "stream"
	v, carry := SetUp(carry, func(c []string) (int, []string) {
		if goroutineID() == caller {
			t.Error("set-up ran on the caller's goroutine")
		}
		return 42, append(c, "target", "remote")
	})
	if v != 42 || len(carry) != 3 || carry[0] != "stream" || carry[2] != "remote" {
		t.Fatalf("SetUp = %d, %q", v, carry)
	}
}

// goroutineID is the id in the first line of runtime.Stack: "goroutine N [".
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	for i := len("goroutine "); i < len(buf); i++ {
		if buf[i] == ' ' {
			return string(buf[:i])
		}
	}
	return string(buf)
}
