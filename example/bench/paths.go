package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/example/internal/stack"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/udpsock"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// conn is a client's end: a TCP connection or a QUIC stream.
type conn interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
	SetDeadline(time.Time) error
}

// path is one way from the client to the far end.
type path struct {
	name  string // direct, quic, tunnel
	about string
	dial  func(ctx context.Context) (conn, error)
	procs []*proc // the processes that serve it, for CPU and memory
}

// proc is a process the benchmark measures.
type proc struct {
	name  string
	d     *stack.Daemon
	pprof string // host:port of its pprof endpoint
}

func tcpPath(name, about, addr string, procs ...*proc) *path {
	return &path{name: name, about: about, procs: procs, dial: func(ctx context.Context) (conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}}
}

// quicClient is the raw path's client: one QUIC connection with the
// connector's TLS, a new stream for every "connection", as the listener
// opens one per tunnelled connection.
type quicClient struct {
	tr   *quic.Transport
	conn *quic.Conn
}

func dialQUIC(ctx context.Context, addr string, files stack.PKIFiles) (*quicClient, error) {
	cert, err := tlsutil.LoadKeyPair(files.ClientCert, files.ClientKey)
	if err != nil {
		return nil, err
	}
	pool, err := tlsutil.LoadCertPool(files.CA)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := udpsock.Listen("", zap.NewNop())
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	// The server may still be starting: retry for a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := tr.Dial(dctx, raddr, tlsutil.ClientConfig(cert, pool, "localhost"), quicConfig())
		cancel()
		if err == nil {
			return &quicClient{tr: tr, conn: c}, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			tr.Close()
			udp.Close()
			return nil, fmt.Errorf("dial the raw QUIC server %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (q *quicClient) path(procs ...*proc) *path {
	return &path{name: "quic", about: "raw quic-go: one mTLS connection to sw-bench quic-server, a stream per connection",
		procs: procs, dial: func(ctx context.Context) (conn, error) {
			st, err := q.conn.OpenStreamSync(ctx)
			if err != nil {
				return nil, err
			}
			return streamConn{st}, nil
		}}
}

func (q *quicClient) close() {
	q.conn.CloseWithError(wire.CodeNoError, "")
	q.tr.Close()
	q.tr.Conn.Close()
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string, d *stack.Daemon) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if d.Exited() {
			return d.ExitError()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s does not accept on %s: %w", d.Name, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
