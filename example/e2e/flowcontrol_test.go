package e2e

import (
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// stalledTunnels is how many tunnels of one port stall. The issue saw every
// port of the connector hang with 6 or more, depending on how far quic-go had
// grown their stream windows; 32 block the old windows whatever the growth: a
// stalled stream holds at least its initial window (512 KiB) of unread data,
// and 32 × 512 KiB exceed the old connection window (15 MiB at most).
const stalledTunnels = 32

// otherPortTransfer is what must still cross another port of the same
// connector, each way, while the stalled tunnels hold what they can.
const otherPortTransfer = 4 << 20

// The test's own ends of the stalled tunnels have small sockets (buffer, and
// MSS, from which Linux sizes the peer's first send buffer): the daemons then
// hold the stalled data in their QUIC streams rather than in kernel buffers
// on loopback, and the test moves ~25 MiB instead of ~150 MiB.
const (
	testSocketBuffer = 16 << 10
	testMSS          = 1400
)

func smallMSS(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, testMSS)
	}); err != nil {
		return err
	}
	return serr
}

// smallListen is a loopback listener whose connections use testMSS.
func smallListen(t *testing.T) *net.TCPListener {
	t.Helper()
	lc := net.ListenConfig{Control: smallMSS}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.(*net.TCPListener)
}

// smallDial connects to port with testMSS; the connection is closed at cleanup.
func smallDial(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: smallMSS}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("dial port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// peerWindowClosed reports whether the peer of c advertises a zero TCP
// receive window: its application is not reading and its buffer is full.
func peerWindowClosed(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	if cerr := raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil {
		return false // closed
	}
	return err == nil && info.Snd_wnd == 0
}

// writeUntilClosed writes to c until a write fails: until c is closed.
func writeUntilClosed(c *net.TCPConn) {
	chunk := make([]byte, 64<<10)
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// senders collects the sockets that write into a port's stalled tunnels.
type senders struct {
	mu    sync.Mutex     // guards the following field
	conns []*net.TCPConn // each writes without end
}

func (s *senders) add(c *net.TCPConn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

// waitStalled waits until n senders see a zero window: the daemon at the
// other end of each has stopped reading it, for want of credit on the QUIC
// stream (or, for a moment, of its turn to send). Stalled tunnels may still
// be filling their streams' windows then; the transfer that follows competes
// with that for the connection, and must complete all the same.
func (s *senders) waitStalled(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, "every stalled tunnel's sender facing a zero window", func() bool {
		s.mu.Lock()
		conns := append([]*net.TCPConn(nil), s.conns...)
		s.mu.Unlock()
		if len(conns) < n {
			return false
		}
		for _, c := range conns {
			if !peerWindowClosed(t, c) {
				return false
			}
		}
		return true
	})
}

// stallDownloads opens a port whose target writes without end to n clients
// that never read.
func stallDownloads(t *testing.T, rl *runningListener, uid string, n int) {
	var s senders
	target := testutil.ServeOn(t, smallListen(t), func(c *net.TCPConn) {
		c.SetWriteBuffer(testSocketBuffer)
		s.add(c)
		writeUntilClosed(c) // ends when ServeOn's cleanup closes c
	})
	port := rl.open(t, uid, target)
	for range n {
		smallDial(t, port).SetReadBuffer(testSocketBuffer) // and never read
	}
	s.waitStalled(t, n)
}

// stallUploads opens a port whose target never reads, and n clients write to
// it without end.
func stallUploads(t *testing.T, rl *runningListener, uid string, n int) {
	var (
		s       senders
		writers sync.WaitGroup
	)
	stop := make(chan struct{})
	target := testutil.ServeOn(t, smallListen(t), func(c *net.TCPConn) {
		c.SetReadBuffer(testSocketBuffer)
		<-stop // never read
	})
	t.Cleanup(func() { close(stop) }) // before ServeOn's cleanup waits for the handlers
	port := rl.open(t, uid, target)
	for range n {
		c := smallDial(t, port)
		c.SetWriteBuffer(testSocketBuffer)
		s.add(c)
		writers.Go(func() { writeUntilClosed(c) })
	}
	t.Cleanup(func() {
		for _, c := range s.conns {
			c.Close()
		}
		writers.Wait()
	})
	s.waitStalled(t, n)
}

// TestStalledTunnelsDoNotBlockOtherPorts: tunnels whose reader stalls (a
// client that never reads a target that never stops, or a target that never
// reads a client that never stops) hold only their own stream's credit. A
// transfer on another port of the same connector — the same QUIC
// connection — still completes, both ways, with every byte intact.
func TestStalledTunnelsDoNotBlockOtherPorts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall func(*testing.T, *runningListener, string, int)
	}{
		{"downloads", stallDownloads},
		{"uploads", stallUploads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rl, _ := setup(t, "swc-1")
			tc.stall(t, rl, "swc-1", stalledTunnels)

			c := dialPort(t, rl.open(t, "swc-1", testutil.EchoServer(t)))
			// A failure guard only: a blocked connection would wait forever.
			c.SetDeadline(time.Now().Add(30 * time.Second))
			payload := testutil.RandomBytes(t, otherPortTransfer)
			if got := roundTrip(t, c, payload); sha256.Sum256(got) != sha256.Sum256(payload) {
				t.Fatalf("echo of %d bytes on another port came back as %d bytes with a different checksum", len(payload), len(got))
			}
		})
	}
}
