package testutil

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// UDPProxy forwards datagrams between clients and one upstream. Blackhole
// makes it drop everything, which to both QUIC peers looks exactly like a host
// that vanished or a NAT that lost its mapping.
type UDPProxy struct {
	conn     *net.UDPConn
	upstream *net.UDPAddr
	drop     atomic.Bool

	mu       sync.Mutex // guards the following fields
	sessions map[string]*net.UDPConn
	closed   bool

	wg sync.WaitGroup
}

// NewUDPProxy forwards a loopback port to upstream until cleanup.
func NewUDPProxy(t testing.TB, upstream *net.UDPAddr) *UDPProxy {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &UDPProxy{conn: c, upstream: upstream, sessions: map[string]*net.UDPConn{}}
	p.wg.Add(1)
	go p.run()
	t.Cleanup(p.Close)
	return p
}

// Addr is where clients send.
func (p *UDPProxy) Addr() *net.UDPAddr { return p.conn.LocalAddr().(*net.UDPAddr) }

// Blackhole drops (true) or forwards (false) all traffic from now on.
func (p *UDPProxy) Blackhole(on bool) { p.drop.Store(on) }

// Close stops forwarding and waits for its goroutines.
func (p *UDPProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.conn.Close()
	for _, s := range p.sessions {
		s.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *UDPProxy) run() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.drop.Load() {
			continue
		}
		up := p.session(from)
		if up == nil {
			return
		}
		up.Write(buf[:n])
	}
}

// session returns the upstream socket for a client, one per client address so
// the upstream sees distinct peers.
func (p *UDPProxy) session(from *net.UDPAddr) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if s, ok := p.sessions[from.String()]; ok {
		return s
	}
	s, err := net.DialUDP("udp", nil, p.upstream)
	if err != nil {
		return nil
	}
	p.sessions[from.String()] = s
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := s.Read(buf)
			if err != nil {
				// A closed upstream port yields ICMP errors; keep the session
				// until the proxy closes, as a NAT would.
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if p.drop.Load() {
				continue
			}
			p.conn.WriteToUDP(buf[:n], from)
		}
	}()
	return s
}
