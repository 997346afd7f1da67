//go:build !unix

package auth

import (
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// closedPort is a TCP port on 127.0.0.1 that was free a moment ago.
func closedPort(t testing.TB) int { return testutil.FreePort(t) }
