package policy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDNS answers from a map and remembers what it was asked.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]string
	asked   []string
}

func (f *fakeDNS) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, host)
	if network != "ip" {
		return nil, errors.New("unexpected network " + network)
	}
	answer, ok := f.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var addrs []netip.Addr
	for _, a := range answer {
		addrs = append(addrs, netip.MustParseAddr(a))
	}
	return addrs, nil
}

var dns = map[string][]string{
	"db.internal":          {"10.0.0.7"},
	"web.corp.internal":    {"10.1.0.5", "2001:db8::5"},
	"a.b.corp.internal":    {"10.1.0.6"},
	"localhost":            {"127.0.0.1", "::1"},
	"rebind.corp.internal": {"127.0.0.1"},
	"meta.corp.internal":   {"169.254.169.254", "fe80::1"},
	"zero.corp.internal":   {"0.0.0.0"},
	"mixed.corp.internal":  {"127.0.0.1", "10.1.0.9"},
	"mapped.corp.internal": {"::ffff:10.1.0.10"},
	"evil.example":         {"10.0.0.9"},
	"lan.example":          {"192.168.1.20", "192.168.1.20"},
	"empty.example":        {},
}

const rules = "10.0.0.0/24:22, db.internal:5432, 127.0.0.1:8000-8100, [2001:db8::/64]:443, " +
	"*.corp.internal:443, localhost:9000, 192.168.1.0/24:*, [2001:db8:1::1]:80, 10.0.0.9:5432"

func mustParse(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return p
}

func TestAddrs(t *testing.T) {
	p := mustParse(t, rules)
	for _, tc := range []struct {
		host string
		port uint16
		want []string // nil: refused
	}{
		// IPv4 CIDR edges and ports.
		{"10.0.0.0", 22, []string{"10.0.0.0:22"}},
		{"10.0.0.255", 22, []string{"10.0.0.255:22"}},
		{"10.0.1.0", 22, nil},
		{"9.255.255.255", 22, nil},
		{"10.0.0.5", 21, nil},
		{"10.0.0.5", 23, nil},
		// Port range edges.
		{"127.0.0.1", 7999, nil},
		{"127.0.0.1", 8000, []string{"127.0.0.1:8000"}},
		{"127.0.0.1", 8100, []string{"127.0.0.1:8100"}},
		{"127.0.0.1", 8101, nil},
		{"127.0.0.2", 8000, nil},
		// "*" is every port.
		{"192.168.1.1", 1, []string{"192.168.1.1:1"}},
		{"192.168.1.1", 65535, []string{"192.168.1.1:65535"}},
		// IPv4-mapped IPv6 is the IPv4 address, both ways.
		{"::ffff:10.0.0.5", 22, []string{"10.0.0.5:22"}},
		{"0:0:0:0:0:ffff:a00:5", 22, []string{"10.0.0.5:22"}},
		{"::ffff:127.0.0.1", 22, nil},
		{"::ffff:127.0.0.1", 8000, []string{"127.0.0.1:8000"}},
		// IPv6 CIDR edges; IPv6 rules do not cover IPv4.
		{"2001:db8::", 443, []string{"[2001:db8::]:443"}},
		{"2001:db8::ffff:ffff:ffff:ffff", 443, []string{"[2001:db8::ffff:ffff:ffff:ffff]:443"}},
		{"2001:db8:0:1::", 443, nil},
		{"2001:DB8::1", 443, []string{"[2001:db8::1]:443"}},
		{"2001:db8::1", 444, nil},
		{"2001:db8:1::1", 80, []string{"[2001:db8:1::1]:80"}},
		{"2001:db8:1::2", 80, nil},
		{"fe80::1%eth0", 443, nil},
		// Forms net.ParseIP rejects are no IP address and no hostname.
		{"010.0.0.1", 22, nil},
		{"0x7f.1", 8000, nil},
		{"127.1", 8000, nil},
		{"0x7f000001", 8000, nil},
		{"10.0.0.5.", 22, nil},
		{"2130706433", 8000, nil},
		// Never dialled, whatever the rules say.
		{"0.0.0.0", 22, nil},
		{"::", 443, nil},
		{"255.255.255.255", 22, nil},
		// A hostname rule: exact, case-insensitive, its port only.
		{"db.internal", 5432, []string{"10.0.0.7:5432"}},
		{"DB.Internal", 5432, []string{"10.0.0.7:5432"}},
		{"db.internal", 5433, nil},
		{"db.internal.", 5432, nil},
		{"xdb.internal", 5432, nil},
		{"db.internal.evil.example", 5432, nil},
		{"db\u212Anternal", 5432, nil},
		// An IP address is never allowed by a hostname rule.
		{"10.0.0.7", 5432, nil},
		// A wildcard is one label deep.
		{"web.corp.internal", 443, []string{"10.1.0.5:443", "[2001:db8::5]:443"}},
		{"a.b.corp.internal", 443, nil},
		{"corp.internal", 443, nil},
		{"web.corp.internal", 80, nil},
		{"mapped.corp.internal", 443, []string{"10.1.0.10:443"}},
		// A hostname rule does not reach the host's own or link-local
		// addresses, and only the allowed ones of a mixed answer are dialled.
		{"rebind.corp.internal", 443, nil},
		{"meta.corp.internal", 443, nil},
		{"zero.corp.internal", 443, nil},
		{"mixed.corp.internal", 443, []string{"10.1.0.9:443"}},
		// ... except "localhost", which reaches loopback only.
		{"localhost", 9000, []string{"127.0.0.1:9000", "[::1]:9000"}},
		{"LOCALHOST", 9000, []string{"127.0.0.1:9000", "[::1]:9000"}},
		{"localhost", 9001, nil},
		// A name allowed by an address rule only after resolution; the same
		// address twice is dialled once.
		{"lan.example", 3306, []string{"192.168.1.20:3306"}},
		{"localhost", 8050, []string{"127.0.0.1:8050"}},
		{"evil.example", 5432, []string{"10.0.0.9:5432"}},
		{"evil.example", 22, []string{"10.0.0.9:22"}},
		{"db.internal", 22, []string{"10.0.0.7:22"}},
		{"web.corp.internal", 22, nil},
		{"nxdomain.example", 22, nil},
		{"empty.example", 22, nil},
	} {
		dns := &fakeDNS{answers: dns}
		got, err := p.Addrs(context.Background(), dns, tc.host, tc.port)
		if tc.want == nil {
			if !errors.Is(err, ErrForbidden) || got != nil {
				t.Errorf("%s port %d: %v, %v; want a refusal", tc.host, tc.port, got, err)
			}
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if err != nil || !slices.Equal(s, tc.want) {
			t.Errorf("%s port %d: %v, %v; want %v", tc.host, tc.port, s, err, tc.want)
		}
	}
}

// TestAddrsLooksUpOnlyWhenItMatters: a name no rule could allow is refused
// without asking DNS, so a listener cannot use the connector to probe names.
func TestAddrsLooksUpOnlyWhenItMatters(t *testing.T) {
	p := mustParse(t, "db.internal:5432,10.0.0.0/8:22")
	for _, tc := range []struct {
		host   string
		port   uint16
		lookup bool
	}{
		{"secret.attacker.example", 443, false},
		{"db.internal", 443, false},
		{"10.0.0.1", 22, false},
		{"db.internal", 5432, true},
		{"secret.attacker.example", 22, true},
	} {
		dns := &fakeDNS{answers: dns}
		_, _ = p.Addrs(context.Background(), dns, tc.host, tc.port)
		if asked := len(dns.asked) > 0; asked != tc.lookup {
			t.Errorf("%s port %d: looked up %v, want %v", tc.host, tc.port, dns.asked, tc.lookup)
		}
	}
	var r *Refusal
	_, err := p.Addrs(context.Background(), &fakeDNS{answers: dns}, "secret.attacker.example", 443)
	if !errors.As(err, &r) || r.Detail != "no rule names secret.attacker.example or covers port 443" {
		t.Errorf("refusal without a lookup: %v", err)
	}
	none := mustParse(t, "none")
	dns := &fakeDNS{answers: dns}
	if _, err := none.Addrs(context.Background(), dns, "localhost", 9000); !errors.Is(err, ErrForbidden) || len(dns.asked) > 0 {
		t.Errorf(`"none": %v, looked up %v; want a refusal without a lookup`, err, dns.asked)
	}
}

func TestAddrsErrors(t *testing.T) {
	p := mustParse(t, rules)
	dns := &fakeDNS{answers: dns}
	ctx := context.Background()

	// A name a hostname rule allows but DNS does not know is a dial failure.
	_, err := p.Addrs(ctx, dns, "nx.corp.internal", 443)
	var dnsErr *net.DNSError
	if errors.Is(err, ErrForbidden) || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("allowed name without addresses: %v, want the DNS error", err)
	}

	for _, tc := range []struct {
		host   string
		port   uint16
		detail []string
	}{
		{"10.0.1.9", 22, []string{"no rule covers 10.0.1.9 port 22"}},
		{"::ffff:10.0.1.9", 22, []string{"no rule covers 10.0.1.9 port 22"}},
		{"0.0.0.0", 22, []string{"0.0.0.0 is never dialled"}},
		{"fe80::1%eth0", 22, []string{"zone"}},
		{"0x7f.1", 22, []string{`"0x7f.1" is neither an IP address nor a hostname`}},
		{"nowhere.example", 22, []string{"looking it up failed", "no such host"}},
		{"rebind.corp.internal", 443, []string{"resolves to 127.0.0.1", "a hostname rule does not reach loopback"}},
		{"web.corp.internal", 22, []string{"resolves to 10.1.0.5, 2001:db8::5, which no rule allows on port 22"}},
	} {
		_, err := p.Addrs(ctx, dns, tc.host, tc.port)
		var r *Refusal
		if !errors.As(err, &r) {
			t.Errorf("%s port %d: %v, want a *Refusal", tc.host, tc.port, err)
			continue
		}
		for _, want := range tc.detail {
			if !strings.Contains(r.Detail, want) {
				t.Errorf("%s port %d: detail %q does not name %q", tc.host, tc.port, r.Detail, want)
			}
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/24:22,db.internal:5432,127.0.0.1:8000-8100", "10.0.0.0/24:22,db.internal:5432,127.0.0.1:8000-8100"},
		{" 10.0.0.1/32:22 , DB.Internal:05432 ", "10.0.0.1:22,db.internal:5432"},
		{"[2001:db8::/64]:443,[2001:DB8::1]:1-65535", "[2001:db8::/64]:443,[2001:db8::1]:*"},
		{"[::/0]:*,0.0.0.0/0:*", "[::/0]:*,0.0.0.0/0:*"},
		{"*.Corp.internal:443,localhost:9000-9000", "*.corp.internal:443,localhost:9000"},
		{"none", "none"},
		{" NONE ", "none"},
		{"db.internal.:1,_srv.internal:2,a-b.c:3", "db.internal.:1,_srv.internal:2,a-b.c:3"},
	} {
		if got := mustParse(t, tc.in).String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"10.0.0.0/24:22,db.internal:99999", []string{`entry 2 "db.internal:99999": port 99999 is outside 1-65535`}},
		{"db.internal:0", []string{"port 0 is outside 1-65535"}},
		{"db.internal:65536", []string{"port 65536 is outside 1-65535"}},
		{"db.internal:123456789012345678901", []string{"port 123456789012345678901 is outside 1-65535"}},
		{"db.internal:+22", []string{`port "+22" is not a number`}},
		{"db.internal:22 ", nil}, // trailing space trimmed: fine
		{"db.internal: 22", []string{`port " 22" is not a number`}},
		{"db.internal:", []string{"missing port"}},
		{"db.internal", []string{`missing ":port" (write db.internal:* for every port)`}},
		{"db.internal:9-8", []string{"port range 9-8 is backwards"}},
		{"db.internal:1-", []string{"missing port"}},
		{"db.internal:1-2-3", []string{`port "2-3" is not a number`}},
		{"a:1,,b:2", []string{`entry 2 "": empty entry`}},
		{"a:1,", []string{`entry 2 "": empty entry`}},
		{"", []string{"no entries"}},
		{"  ", []string{"no entries"}},
		{"none,a:1", []string{`entry 1 "none": "none" refuses every target and must be the whole value`}},
		{"*:443", []string{`"*" is not a host: write 0.0.0.0/0 and [::/0]`}},
		{":443", []string{"missing host"}},
		{"10.0.0.1/24:22", []string{"10.0.0.1/24 has host bits set: did you mean 10.0.0.0/24"}},
		{"10.0.0.0/33:22", []string{`"10.0.0.0/33" is not an IPv4 CIDR`}},
		{"010.0.0.1:22", []string{`"010.0.0.1" is not an IPv4 address`}},
		{"0x7f.1:22", []string{`"0x7f.1" is not an IPv4 address`}},
		{"256.0.0.1:22", []string{`"256.0.0.1" is not an IPv4 address`}},
		{"0.0.0.0:22", []string{"0.0.0.0 is never dialled"}},
		{"[::]:22", []string{":: is never dialled"}},
		{"2001:db8::1:443", []string{"an IPv6 address goes in brackets"}},
		{"[2001:db8::1]443", []string{`missing ":port" after [2001:db8::1]`}},
		{"[2001:db8::1", []string{`missing "]"`}},
		{"[2001:db8::1/64]:443", []string{"has host bits set: did you mean 2001:db8::/64"}},
		{"[2001:db8::/64:443", []string{`missing "]"`}},
		{"[2001:db8::]/64:443", []string{"the prefix length goes inside the brackets"}},
		{"[fe80::1%eth0]:22", []string{"zone"}},
		{"[::ffff:10.0.0.1]:22", []string{"IPv4-mapped"}},
		{"[::ffff:10.0.0.0/104]:22", []string{"IPv4-mapped"}},
		{"[10.0.0.1]:22", []string{"brackets are for IPv6"}},
		{"[nope]:22", []string{`"nope" is not an IPv6 address`}},
		{"db..internal:22", []string{`"db..internal" is not a valid hostname`}},
		{"-db.internal:22", []string{"not a valid hostname"}},
		{"db internal:22", []string{"not a valid hostname"}},
		{"d\u00e9.internal:22", []string{"not a valid hostname"}},
		{strings.Repeat("a", 64) + ".internal:22", []string{"not a valid hostname"}},
		{"*.:22", []string{"not a valid wildcard"}},
		{"*.*.internal:22", []string{"not a valid wildcard"}},
		{"db*.internal:22", []string{"not a valid hostname"}},
		{"*.10.0.0.1:22", []string{"not a valid wildcard"}},
		// Every malformed entry is reported, each with its position.
		{"a:0,b:1,c:x,d", []string{`entry 1 "a:0"`, `entry 3 "c:x"`, `entry 4 "d"`}},
	} {
		_, err := Parse(tc.in)
		if tc.want == nil {
			if err != nil {
				t.Errorf("Parse(%q): %v", tc.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error naming %q", tc.in, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q): %q does not name %q", tc.in, err, w)
			}
		}
	}
	_, err := Parse("a:0,b:1,c:x")
	var entry *EntryError
	if !errors.As(err, &entry) || entry.Index != 1 || entry.Entry != "a:0" {
		t.Errorf("Parse error %v: want *EntryError for entry 1", err)
	}
	if _, err := Parse(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(\"\"): %v, want ErrEmpty", err)
	}
}
