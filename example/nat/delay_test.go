package nat

import (
	"errors"
	"net"
	"sync"
	"time"
)

// delayProxy relays UDP from listenerIP:11444 in pub to the listener's QUIC
// port, holding every datagram for d in each direction: the delay tc netem
// would add, for a kernel without sch_netem. It returns the port connectors
// dial and ends with the test.
func (s *site) delayProxy(d time.Duration) int {
	s.t.Helper()
	var front *net.UDPConn
	upstream := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.quicPort}
	if err := inNS(s.tp.pub, func() error {
		var err error
		front, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(listenerIP), Port: 11444})
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		sessions = map[string]*net.UDPConn{}
		timers   sync.WaitGroup
	)
	later := func(b []byte, send func([]byte)) {
		p := append([]byte(nil), b...)
		timers.Add(1)
		time.AfterFunc(d, func() { defer timers.Done(); send(p) })
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			back, ok := sessions[from.String()]
			if !ok {
				err = inNS(s.tp.pub, func() error {
					var err error
					back, err = net.DialUDP("udp", nil, upstream)
					return err
				})
				if err != nil {
					mu.Unlock()
					continue
				}
				sessions[from.String()] = back
				wg.Add(1)
				go func(from *net.UDPAddr) {
					defer wg.Done()
					buf := make([]byte, 64<<10)
					for {
						n, err := back.Read(buf)
						if errors.Is(err, net.ErrClosed) {
							return
						}
						if err != nil {
							continue
						}
						later(buf[:n], func(p []byte) { front.WriteToUDP(p, from) })
					}
				}(from)
			}
			mu.Unlock()
			later(buf[:n], func(p []byte) { back.Write(p) })
		}
	}()
	s.t.Cleanup(func() {
		front.Close()
		mu.Lock()
		for _, c := range sessions {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		timers.Wait()
	})
	return 11444
}
