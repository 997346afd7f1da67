package policy

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

var seeds = []string{
	rules, "none", "", ",", "a:1,,b:2", "[", "[]:1", "[::]:", "[2001:db8::/64]:443",
	"10.0.0.0/24:22", "10.0.0.1/24:22", "*.a:1-2", "*:*", "db.internal:99999", "0x7f.1:1",
	"[::ffff:1.2.3.4]:1", "[fe80::1%eth0]:1", "a:-", "a:1-", "a:-1", "a.:*", "localhost:9000",
}

// FuzzParse: Parse never panics, and what it accepts it prints in a form it
// reads back to the same policy.
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(p.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q, which does not parse: %v", s, p.String(), err)
		}
		if again.String() != p.String() {
			t.Fatalf("%q printed as %q, then as %q", s, p.String(), again.String())
		}
	})
}

// FuzzAddrs: whatever a listener names, Addrs never panics, refuses with
// ErrForbidden or fails the lookup, and returns only addresses the rules
// allow on the requested port.
func FuzzAddrs(f *testing.F) {
	for _, host := range []string{"10.0.0.5", "db.internal", "localhost", "::ffff:127.0.0.1", "fe80::1%lo", "0x7f.1", "", "."} {
		f.Add(rules, host, uint16(22))
	}
	f.Add("none", "db.internal", uint16(5432))
	f.Fuzz(func(t *testing.T, policy, host string, port uint16) {
		p, err := Parse(policy)
		if err != nil {
			return
		}
		got, err := p.Addrs(context.Background(), &fakeDNS{answers: dns}, host, port)
		if err != nil {
			var r *Refusal
			if got != nil || errors.As(err, &r) != errors.Is(err, ErrForbidden) {
				t.Fatalf("addresses %v along with %v", got, err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("no addresses and no error")
		}
		for _, a := range got {
			if a.Port() != port || a.Addr().Is4In6() || a.Addr().IsUnspecified() {
				t.Fatalf("%s port %d: dials %s", host, port, a)
			}
			if _, err := netip.ParseAddr(host); err == nil && !p.AllowsAddr(a.Addr(), port) {
				t.Fatalf("address %s allowed without an address rule", host)
			}
		}
	})
}
