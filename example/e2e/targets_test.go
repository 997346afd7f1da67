package e2e

import (
	"net"
	"testing"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func testutilEcho(t *testing.T) *net.TCPAddr   { return testutil.EchoServer(t) }
func testutilDigest(t *testing.T) *net.TCPAddr { return testutil.DigestServer(t) }
