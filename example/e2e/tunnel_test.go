package e2e

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

// roundTrip sends payload, half-closes, and returns everything read back.
func roundTrip(t *testing.T, c *net.TCPConn, payload []byte) []byte {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write payload: %v", err)
	}
	return got
}

func TestPayloadsIntactBothWays(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	for _, size := range []int{0, 1, 64 << 10, 32 << 20} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			payload := testutil.RandomBytes(t, size)
			got := roundTrip(t, dialPort(t, port), payload)
			if sha256.Sum256(got) != sha256.Sum256(payload) {
				t.Fatalf("echo of %d bytes came back as %d bytes with a different checksum", size, len(got))
			}
		})
	}
	// Both daemons log each tunnel once at its end, with the bytes each way.
	testutil.Eventually(t, "close log line", func() bool { return testutil.Logged(rl.logs, "tunnel closed", "bytes_up", fmt.Sprint(32<<20)) })
}

func TestHalfCloseClientStillGetsReply(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.DigestServer(t))
	payload := testutil.RandomBytes(t, 200<<10)
	// The digest server answers only after it has seen the client's FIN, so
	// the reply proves FIN crossed the tunnel and the other direction stayed open.
	got := roundTrip(t, dialPort(t, port), payload)
	want := sha256.Sum256(payload)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("reply %x, want digest %x", got, want)
	}
}

func TestConcurrentConnectionsNotMixedUp(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			payload := []byte(fmt.Sprintf("connection %d: %x", i, testutil.RandomBytes(t, 1000+i)))
			go func() { c.Write(payload); c.CloseWrite() }()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("connection %d got %.40q..., want %.40q...", i, got, payload)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDuplicateUIDRefusedFirstKeepsWorking(t *testing.T) {
	e, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))

	second := e.startConnector(e.connectorConfig("swc-1", rl.quicPort()))
	testutil.Eventually(t, "second connector told it is a duplicate", func() bool {
		return testutil.Logged(second.logs, "listener refused this connector", "reason", "already connected")
	})
	if !testutil.Logged(rl.logs, "connector refused", "reason", "already connected") {
		t.Error("listener did not log the refusal")
	}
	second.stop()

	got := roundTrip(t, dialPort(t, port), []byte("still here"))
	if string(got) != "still here" {
		t.Fatalf("first connector's tunnel answered %q", got)
	}
}

func TestDialFailureResetsClientWithReason(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	closed := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: testutil.FreePort(t)}
	port := rl.open(t, "swc-1", closed)

	if err := clientOutcome(port); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after a failed dial: err=%v, want connection reset", err)
	}
	testutil.Eventually(t, "listener logs the connector's reason", func() bool {
		return testutil.Logged(rl.logs, "tunnel refused by connector", "reason", "connection refused")
	})
}

func TestCloseEndsInFlightConnections(t *testing.T) {
	_, rl, _ := setup(t, "swc-1")
	port := rl.open(t, "swc-1", testutil.EchoServer(t))
	c := dialPort(t, port)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo before close: %v", err)
	}
	if r := call(t, "DELETE", rl.api+"/close", fmt.Sprintf(`{"port":%d}`, port)); r.status != 200 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err == nil || errors.Is(err, syscall.ETIMEDOUT) || testutil.IsTimeout(err) {
		t.Fatalf("in-flight connection after /close: read err=%v, want it ended", err)
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Fatal("closed port still accepts connections")
	}
}
