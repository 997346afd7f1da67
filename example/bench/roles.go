package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/shared/debugserver"
	"github.com/socket-warp/socket-warp/shared/quicconf"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/udpsock"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// The first byte a client sends picks what the far end does with the
// connection (or stream); the target and the raw QUIC server speak the same.
const (
	modeEcho = 'e' // copy everything back; half-close after the client's EOF
	modeSink = 's' // read to EOF, then answer the byte count (8 bytes, big endian)
	modeGen  = 'g' // read a duration (8 bytes, ns), send data for that long, half-close
)

const chunk = 64 << 10

// halfCloser is what a TCP connection and a QUIC stream have in common.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// serve answers one connection or stream in the mode its first byte names.
func serve(c halfCloser) error {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return err
	}
	switch mode[0] {
	case modeEcho:
		// Small: thousands of idle echo connections must not weigh on the
		// far end's memory figures with buffers they never fill.
		buf := make([]byte, 4<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return c.CloseWrite()
			}
			if err != nil {
				return err
			}
		}
	case modeSink:
		buf := make([]byte, chunk)
		var total uint64
		for {
			n, err := c.Read(buf)
			total += uint64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if _, err := c.Write(binary.BigEndian.AppendUint64(nil, total)); err != nil {
			return err
		}
		return c.CloseWrite()
	case modeGen:
		var d [8]byte
		if _, err := io.ReadFull(c, d[:]); err != nil {
			return err
		}
		buf := make([]byte, chunk)
		end := time.Now().Add(time.Duration(binary.BigEndian.Uint64(d[:])))
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
		return c.CloseWrite()
	default:
		return fmt.Errorf("unknown mode %q", mode[0])
	}
}

// streamConn lets a QUIC stream be served and dialled like a TCP connection.
type streamConn struct{ *quic.Stream }

func (s streamConn) CloseWrite() error { return s.Stream.Close() }

// Close ends both directions: a stream closed for writing only would stay
// open until the peer reads everything.
func (s streamConn) Close() error {
	s.CancelRead(0)
	return s.Stream.Close()
}

// helperMain runs a helper role until SIGTERM: the target or the raw QUIC
// server, each a process of its own like the daemons.
func helperMain(role string, args []string) {
	fs := flag.NewFlagSet(role, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to serve on")
	pprofAddr := fs.String("pprof", "", "loopback address for pprof")
	cert := fs.String("cert", "", "server certificate (quic-server)")
	key := fs.String("key", "", "server key (quic-server)")
	ca := fs.String("ca", "", "CA of client certificates (quic-server)")
	_ = fs.Parse(args)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zap.NewNop()
	var wg sync.WaitGroup
	defer wg.Wait()
	if *pprofAddr != "" {
		srv, err := debugserver.Listen(*pprofAddr, log)
		if err != nil {
			fatal(err)
		}
		wg.Go(func() { _ = srv.Run(ctx) })
	}
	var err error
	switch role {
	case "target":
		err = runTarget(ctx, *addr)
	case "quic-server":
		err = runQUICServer(ctx, *addr, *cert, *key, *ca, log)
	}
	if err != nil && ctx.Err() == nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "sw-bench: %v\n", err)
	os.Exit(1)
}

// runTarget is the TCP target: every accepted connection is served by serve.
func runTarget(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		tc := c.(*net.TCPConn)
		wg.Go(func() {
			defer tc.Close()
			stop := context.AfterFunc(ctx, func() { tc.Close() })
			defer stop()
			_ = serve(tc)
		})
	}
}

// quicConfig is the raw path's QUIC configuration: that of the daemons
// (listener/listener.go, connector/connector.go) as far as it matters for one
// connection: the keep-alive and idle timeout, stream credit for every
// tunnelled connection, the same flow-control windows.
func quicConfig() *quic.Config {
	return quicconf.Windows(&quic.Config{
		KeepAlivePeriod:       20 * time.Second,
		MaxIdleTimeout:        60 * time.Second,
		HandshakeIdleTimeout:  10 * time.Second,
		MaxIncomingStreams:    quicconf.MaxStreams,
		MaxIncomingUniStreams: -1,
	})
}

// runQUICServer is the raw quic-go end: the listener's TLS (mTLS, TLS 1.3,
// the socket-warp ALPN) and socket setup, and every stream served by serve,
// with no relay behind it.
func runQUICServer(ctx context.Context, addr, certPath, keyPath, caPath string, log *zap.Logger) error {
	cert, err := tlsutil.LoadKeyPair(certPath, keyPath)
	if err != nil {
		return err
	}
	pool, err := tlsutil.LoadCertPool(caPath)
	if err != nil {
		return err
	}
	udp, err := udpsock.Listen(addr, log)
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()
	ln, err := tr.Listen(tlsutil.ServerConfig(cert, pool), quicConfig())
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer conn.CloseWithError(wire.CodeNoError, "")
			for {
				st, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				wg.Go(func() {
					sc := streamConn{st}
					if err := serve(sc); err != nil && !errors.Is(err, io.EOF) {
						st.CancelWrite(0)
					}
					sc.Close()
				})
			}
		})
	}
}
