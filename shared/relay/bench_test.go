package relay

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// The micro-benchmarks run Relay between real loopback TCP connections and
// QUIC streams, in each of the test topologies (tcp-tcp; tcp-quic as in the
// listener; quic-tcp as in the connector). `make bench-micro` runs them
// briefly: they must run, no figure is checked. Compare with benchstat.

// BenchmarkRelayBulk moves 64 KiB chunks from near to far; one op is one
// chunk.
func BenchmarkRelayBulk(b *testing.B) {
	const size = 64 << 10
	for _, tp := range topologies {
		b.Run(tp.name, func(b *testing.B) {
			near, far, ra, rb := tp.build(b)
			extend(near, far)
			startRelay(b, ra, rb, Counters{})
			chunk := bytes.Repeat([]byte{0x5a}, size)
			read := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, far)
				read <- n
			}()
			b.SetBytes(size)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := near.Write(chunk); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := near.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			if got := <-read; got != int64(n*size) {
				b.Fatalf("far end read %d bytes, want %d", got, n*size)
			}
		})
	}
}

// BenchmarkRelayRoundTrip sends 64 bytes near→far and back far→near through
// the same relay; one op is one round trip.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, tp := range topologies {
		b.Run(tp.name, func(b *testing.B) {
			near, far, ra, rb := tp.build(b)
			extend(near, far)
			startRelay(b, ra, rb, Counters{})
			echoed := make(chan error, 1)
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(far, buf); err != nil {
						if err == io.EOF {
							err = nil
						}
						echoed <- err
						return
					}
					if _, err := far.Write(buf); err != nil {
						echoed <- err
						return
					}
				}
			}()
			out, in := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := near.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(near, in); err != nil {
					b.Fatal(err)
				}
			}
			if err := near.CloseWrite(); err != nil {
				b.Fatal(err)
			}
			if err := <-echoed; err != nil {
				b.Fatalf("far end: %v", err)
			}
		})
	}
}

// extend lifts the tests' safety deadline for a benchmark that may run long
// (-benchtime); a stuck relay still ends with the benchmark's own timeout.
func extend(ends ...*end) {
	for _, e := range ends {
		if e.tcp != nil {
			e.tcp.SetDeadline(time.Time{})
		} else {
			e.stream.SetDeadline(time.Time{})
		}
	}
}
