// Package policy is sw-connector's target policy (SWC_ALLOW): the targets a
// listener may have the connector dial. It is written for a listener that
// is compromised: whatever a stream header names, the connector reaches
// only what the policy's owner listed.
//
// # Syntax
//
// A policy is a comma-separated list of entries, each host:ports:
//
//	10.0.0.5:22             one IPv4 address, one port
//	10.0.0.0/24:22          an IPv4 CIDR (host bits must be zero)
//	[2001:db8::1]:443       one IPv6 address, always in brackets
//	[2001:db8::/64]:443     an IPv6 CIDR, the prefix inside the brackets
//	db.internal:5432        a hostname
//	*.corp.internal:443     every name exactly one label below corp.internal
//	127.0.0.1:8000-8100     an inclusive port range
//	db.internal:*           every port (1-65535)
//
// Space around entries is ignored; an empty entry is an error. The whole
// value "none" refuses every target. An empty value is an error
// ([ErrEmpty]): an unset variable and an empty one look alike in many
// deployment tools, and a policy must not open up by accident. There is no
// "any host" entry: 0.0.0.0/0:* and [::/0]:* cover every address, and with
// them every name that resolves to one.
//
// IPv4 addresses are dotted quads only (no leading zeros, hex or short
// forms such as 127.1); IPv4-mapped IPv6 and zoned addresses are refused as
// rules, so there is one way to write each address.
//
// # Matching
//
// A target that is an IP address (IPv4-mapped IPv6 counts as the IPv4
// address) is allowed by address rules only, never by a hostname rule.
//
// A target that is a name must be a valid hostname (ASCII letters, digits,
// '-' and '_', whose last label is not a number) and is compared with
// hostname rules ASCII case-insensitively and exactly: no suffix match, and
// "db.internal." is a different name from "db.internal". The connector
// resolves the name once, itself, and dials only the resolved addresses the
// policy allows, exactly those, so the check and the connection see the
// same address whatever the DNS answers next. A resolved address is allowed
//   - by an address rule covering it and the port, or
//   - by a hostname rule naming the target and the port, unless the address
//     is loopback, link-local, unspecified or multicast: those belong to the
//     connector's own host (and, for link-local, to cloud metadata services)
//     and need an address rule. The one exception is the rule "localhost",
//     which reaches loopback addresses and nothing else.
//
// A name that no hostname rule matches is resolved only if some address rule
// covers the port, so a listener cannot make the connector look up
// arbitrary names. The unspecified addresses 0.0.0.0 and ::, multicast and
// broadcast are never dialled (connecting to 0.0.0.0 reaches the local host).
//
// Refusals are errors matching [ErrForbidden]; their [Refusal.Detail] may
// say what a name resolved to, which belongs in the connector's log but not
// in the verdict sent to the listener.
package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/socket-warp/socket-warp/shared/hostname"
)

// ErrForbidden is matched (errors.Is) by every refusal.
var ErrForbidden = errors.New("target not allowed")

// ErrEmpty is Parse's error for a value with no entries at all.
var ErrEmpty = errors.New("no entries")

// None is the value that refuses every target.
const None = "none"

// Refusal is the error for a target the policy does not allow.
type Refusal struct {
	// Detail says why, for the connector's own log: it may name the
	// addresses a hostname resolved to.
	Detail string
}

func (e *Refusal) Error() string        { return "target not allowed: " + e.Detail }
func (e *Refusal) Is(target error) bool { return target == ErrForbidden }

func refused(format string, args ...any) error {
	return &Refusal{Detail: fmt.Sprintf(format, args...)}
}

// EntryError is a malformed entry. Index counts from 1.
type EntryError struct {
	Index int
	Entry string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %d %q: %v", e.Index, e.Entry, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// Policy is a parsed SWC_ALLOW. It is immutable and safe for concurrent use.
type Policy struct {
	rules []rule
}

type rule struct {
	prefix netip.Prefix // address rule when valid
	name   string       // exact hostname, lower case
	suffix string       // wildcard "*.x.y" stored as ".x.y"
	lo, hi uint16
}

// Parse reads a policy. Every malformed entry is reported, each as an
// *EntryError, joined.
func Parse(s string) (*Policy, error) {
	if strings.TrimSpace(s) == "" {
		return nil, ErrEmpty
	}
	if strings.EqualFold(strings.TrimSpace(s), None) {
		return &Policy{}, nil
	}
	var (
		p    Policy
		errs []error
	)
	for i, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		r, err := parseEntry(e)
		if err != nil {
			errs = append(errs, &EntryError{Index: i + 1, Entry: e, Err: err})
			continue
		}
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &p, nil
}

func parseEntry(e string) (rule, error) {
	if e == "" {
		return rule{}, errors.New("empty entry")
	}
	if strings.EqualFold(e, None) {
		return rule{}, fmt.Errorf("%q refuses every target and must be the whole value", None)
	}
	var r rule
	var host, ports string
	if e[0] == '[' {
		end := strings.IndexByte(e, ']')
		if end < 0 {
			return r, errors.New(`missing "]" after the IPv6 address`)
		}
		host, ports = e[1:end], e[end+1:]
		if strings.HasPrefix(ports, "/") {
			return r, errors.New("the prefix length goes inside the brackets, e.g. [2001:db8::/64]:443")
		}
		if !strings.HasPrefix(ports, ":") {
			return r, fmt.Errorf(`missing ":port" after [%s] (write [%s]:* for every port)`, host, host)
		}
		ports = ports[1:]
		pfx, err := parseIPv6(host)
		if err != nil {
			return r, err
		}
		r.prefix = pfx
	} else {
		i := strings.LastIndexByte(e, ':')
		if i < 0 {
			return r, fmt.Errorf(`missing ":port" (write %s:* for every port)`, e)
		}
		host, ports = e[:i], e[i+1:]
		if strings.Contains(host, ":") {
			return r, errors.New("an IPv6 address goes in brackets, e.g. [2001:db8::1]:443 or [2001:db8::/64]:443")
		}
		if err := r.parseHost(host); err != nil {
			return r, err
		}
	}
	lo, hi, err := parsePorts(ports)
	if err != nil {
		return r, err
	}
	r.lo, r.hi = lo, hi
	return r, nil
}

func parseIPv6(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, fmt.Errorf("%q is not an IPv6 CIDR", s)
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			if strings.Contains(s, "%") {
				return pfx, fmt.Errorf("%q has a zone; zoned addresses are not supported", s)
			}
			return pfx, fmt.Errorf("%q is not an IPv6 address", s)
		}
		if a.Zone() != "" {
			return pfx, fmt.Errorf("%q has a zone; zoned addresses are not supported", s)
		}
		if neverDialled(a) {
			return pfx, fmt.Errorf("%s is never dialled", a)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	switch a := pfx.Addr(); {
	case a.Is4():
		return pfx, fmt.Errorf("brackets are for IPv6: write %s without them", s)
	case a.Is4In6():
		return pfx, fmt.Errorf("%q is IPv4-mapped: write the IPv4 address or CIDR without brackets", s)
	}
	return canonical(pfx)
}

func (r *rule) parseHost(host string) error {
	switch {
	case host == "":
		return errors.New("missing host")
	case host == "*":
		return errors.New(`"*" is not a host: write 0.0.0.0/0 and [::/0] to allow every address`)
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("%q is not an IPv4 CIDR", host)
		}
		pfx, err := canonical(p)
		r.prefix = pfx
		return err
	case strings.HasPrefix(host, "*."):
		suffix := host[1:]
		if hostname.Check(suffix[1:]) != nil {
			return fmt.Errorf("%q is not a valid wildcard: want *. followed by a hostname", host)
		}
		r.suffix = strings.ToLower(suffix)
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if neverDialled(a) {
			return fmt.Errorf("%s is never dialled", a)
		}
		r.prefix = netip.PrefixFrom(a, a.BitLen())
		return nil
	}
	if hostname.Check(host) != nil {
		if hostname.LooksNumeric(host) {
			return fmt.Errorf("%q is not an IPv4 address (dotted quad, no leading zeros) nor a hostname", host)
		}
		return fmt.Errorf("%q is not a valid hostname", host)
	}
	r.name = strings.ToLower(host)
	return nil
}

// canonical refuses a CIDR with host bits set: 10.0.0.1/24 was probably
// meant as one host, or as 10.0.0.0/24.
func canonical(p netip.Prefix) (netip.Prefix, error) {
	if m := p.Masked(); m != p {
		return p, fmt.Errorf("%s has host bits set: did you mean %s, or the single address %s?", p, m, p.Addr())
	}
	return p, nil
}

func parsePorts(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	l, h, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(l); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(h); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("port range %d-%d is backwards", lo, hi)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New(`missing port (a number, a range such as 8000-8100, or "*")`)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf(`port %q is not a number, a range such as 8000-8100, or "*"`, s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %s is outside 1-65535", s)
	}
	return uint16(n), nil
}

// String is the policy in canonical form, which Parse reads back.
func (p *Policy) String() string {
	if len(p.rules) == 0 {
		return None
	}
	var b strings.Builder
	for i, r := range p.rules {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case r.name != "":
			b.WriteString(r.name)
		case r.suffix != "":
			b.WriteString("*" + r.suffix)
		case r.prefix.Addr().Is6():
			b.WriteString("[" + prefixString(r.prefix) + "]")
		default:
			b.WriteString(prefixString(r.prefix))
		}
		b.WriteByte(':')
		switch {
		case r.lo == 1 && r.hi == 65535:
			b.WriteByte('*')
		case r.lo == r.hi:
			b.WriteString(strconv.Itoa(int(r.lo)))
		default:
			fmt.Fprintf(&b, "%d-%d", r.lo, r.hi)
		}
	}
	return b.String()
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func (r rule) hasPort(port uint16) bool { return r.lo <= port && port <= r.hi }

// AllowsAddr reports whether an address rule allows addr:port. The address
// is compared in its IPv4 form when it is IPv4-mapped, without its zone.
func (p *Policy) AllowsAddr(addr netip.Addr, port uint16) bool {
	addr = addr.Unmap().WithZone("")
	if neverDialled(addr) {
		return false
	}
	for _, r := range p.rules {
		if r.prefix.IsValid() && r.hasPort(port) && r.prefix.Contains(addr) {
			return true
		}
	}
	return false
}

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func neverDialled(a netip.Addr) bool {
	return a.IsUnspecified() || a.IsMulticast() || a == broadcast
}

// hostLocal are addresses a hostname rule does not reach.
func hostLocal(a netip.Addr) bool {
	return a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() || a == broadcast
}

// allowsName reports whether a hostname rule names host (already lower case
// and valid) on port.
func (p *Policy) allowsName(host string, port uint16) bool {
	for _, r := range p.rules {
		if !r.hasPort(port) {
			continue
		}
		if r.name != "" && r.name == host {
			return true
		}
		if r.suffix != "" && strings.HasSuffix(host, r.suffix) {
			if label := host[:len(host)-len(r.suffix)]; label != "" && !strings.Contains(label, ".") {
				return true
			}
		}
	}
	return false
}

func (p *Policy) addrRuleFor(port uint16) bool {
	for _, r := range p.rules {
		if r.prefix.IsValid() && r.hasPort(port) {
			return true
		}
	}
	return false
}

// Resolver looks names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Addrs returns the addresses the connector may dial for host:port, in the
// resolver's order: the address itself for an IP address, the allowed
// resolved addresses for a name. The caller dials exactly these and never
// host again. A refusal matches ErrForbidden; any other error is a failed
// lookup of a name a hostname rule allows.
func (p *Policy) Addrs(ctx context.Context, r Resolver, host string, port uint16) ([]netip.AddrPort, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		switch {
		case a.Zone() != "":
			return nil, refused("%s has a zone; zoned addresses are never dialled", host)
		case neverDialled(a):
			return nil, refused("%s is never dialled", a)
		case !p.AllowsAddr(a, port):
			return nil, refused("no rule covers %s port %d", a, port)
		}
		return []netip.AddrPort{netip.AddrPortFrom(a, port)}, nil
	}
	if hostname.Check(host) != nil {
		return nil, refused("%q is neither an IP address nor a hostname", host)
	}
	name := strings.ToLower(host)
	named := p.allowsName(name, port)
	if !named && !p.addrRuleFor(port) {
		// Not looked up: the answer could not change the verdict.
		return nil, refused("no rule names %s or covers port %d", name, port)
	}
	found, err := r.LookupNetIP(ctx, "ip", name)
	if err == nil && len(found) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true}
	}
	if err != nil {
		if named {
			return nil, err
		}
		// The listener learns no more about a name it may not reach than
		// that it may not reach it.
		return nil, refused("no hostname rule names %s, and looking it up failed: %v", name, err)
	}
	var allowed []netip.AddrPort
	var denied []string
	for _, a := range found {
		a = a.Unmap()
		ok := p.AllowsAddr(a, port)
		if !ok && named {
			if name == "localhost" {
				ok = a.IsLoopback()
			} else {
				ok = !hostLocal(a)
			}
		}
		ap := netip.AddrPortFrom(a, port)
		switch {
		case !ok:
			denied = append(denied, a.String())
		case !slices.Contains(allowed, ap):
			allowed = append(allowed, ap)
		}
	}
	if len(allowed) == 0 {
		if len(denied) > 4 {
			denied = append(denied[:4], fmt.Sprintf("and %d more", len(denied)-4))
		}
		hint := ""
		switch {
		case named && name == "localhost":
			hint = " (the rule localhost reaches loopback addresses only)"
		case named:
			hint = " (a hostname rule does not reach loopback, link-local, unspecified or multicast addresses: allow them by address)"
		}
		return nil, refused("%s resolves to %s, which no rule allows on port %d%s", name, strings.Join(denied, ", "), port, hint)
	}
	return allowed, nil
}
