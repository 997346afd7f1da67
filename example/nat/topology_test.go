// Package nat runs sw-listener and sw-connector as real processes on both
// sides of a real NAT: Linux network namespaces made by the test, an nftables
// masquerade in a router namespace between them, and faults injected there.
//
//	[pub]  listener 10.231.1.10 ── 10.231.1.1 [rtr] 10.231.2.1 ── 10.231.2.10 connector, target [site]
//	                                    masquerade out of rtr-out
//
// The site can reach the listener; nothing in pub can reach the site.
package nat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	listenerIP = "10.231.1.10"
	routerOut  = "10.231.1.1"
	routerIn   = "10.231.2.1"
	connectIP  = "10.231.2.10"
)

var topoSeq atomic.Int64

// topology is three namespaces joined by veth pairs; Close removes them.
type topology struct {
	pub, rtr, site string // namespace names
	rtrOut         string // the router's outside interface (the NAT's public side)
	rtrIn          string // the router's inside interface (towards the site)
}

// run executes a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	id := fmt.Sprintf("%d%d", os.Getpid()%1000, topoSeq.Add(1))
	tp := &topology{pub: "swpub" + id, rtr: "swrtr" + id, site: "swsite" + id, rtrOut: "ro" + id, rtrIn: "ri" + id}
	for _, ns := range []string{tp.pub, tp.rtr, tp.site} {
		run(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	// pub <-> rtr (the "internet"), rtr <-> site (the closed network).
	link := func(aNS, aIf, aAddr, bNS, bIf, bAddr string) {
		run(t, "ip", "link", "add", aIf, "netns", aNS, "type", "veth", "peer", "name", bIf, "netns", bNS)
		run(t, "ip", "-n", aNS, "addr", "add", aAddr, "dev", aIf)
		run(t, "ip", "-n", bNS, "addr", "add", bAddr, "dev", bIf)
		run(t, "ip", "-n", aNS, "link", "set", aIf, "up")
		run(t, "ip", "-n", bNS, "link", "set", bIf, "up")
	}
	link(tp.pub, "pb"+id, listenerIP+"/24", tp.rtr, tp.rtrOut, routerOut+"/24")
	link(tp.rtr, tp.rtrIn, routerIn+"/24", tp.site, "st"+id, connectIP+"/24")
	run(t, "ip", "-n", tp.site, "route", "add", "default", "via", routerIn)
	run(t, "ip", "netns", "exec", tp.rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The NAT: everything leaving towards the internet gets the router's
	// address; pub has no route back into the site except through it.
	nft := fmt.Sprintf(`table ip nat {
	chain post { type nat hook postrouting priority 100; oifname "%[1]s" masquerade; }
}
table ip fault {
	chain faults { type filter hook forward priority 0; }
}
table ip count {
	counter up {}
	counter down {}
	chain tally {
		type filter hook forward priority -10;
		iifname "%[2]s" oifname "%[1]s" counter name "up"
		iifname "%[1]s" oifname "%[2]s" counter name "down"
	}
}
`, tp.rtrOut, tp.rtrIn)
	cmd := exec.Command("ip", "netns", "exec", tp.rtr, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nft)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	return tp
}

// nft runs one nft command in the router.
func (tp *topology) nft(t *testing.T, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"netns", "exec", tp.rtr, "nft"}, args...)...)
}

// traffic is what crossed the NAT so far: packets and bytes (IP headers
// included) from the site out (up) and back in (down). A packet the NAT has
// no mapping for is not forwarded, so it is not counted.
type traffic struct{ upPackets, upBytes, downPackets, downBytes int64 }

func (a traffic) minus(b traffic) traffic {
	return traffic{a.upPackets - b.upPackets, a.upBytes - b.upBytes, a.downPackets - b.downPackets, a.downBytes - b.downBytes}
}

func (tp *topology) traffic(t *testing.T) traffic {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", tp.rtr, "nft", "-j", "list", "counters", "table", "ip", "count").Output()
	if err != nil {
		t.Fatalf("nft list counters: %v", err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name           string
				Packets, Bytes int64
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft list counters: %v\n%s", err, out)
	}
	var tr traffic
	for _, o := range doc.Nftables {
		switch c := o.Counter; {
		case c == nil:
		case c.Name == "up":
			tr.upPackets, tr.upBytes = c.Packets, c.Bytes
		case c.Name == "down":
			tr.downPackets, tr.downBytes = c.Packets, c.Bytes
		}
	}
	return tr
}

// flushNAT makes the router forget every mapping, as a router reboot or a
// CGNAT timeout does.
func (tp *topology) flushNAT(t *testing.T) {
	t.Helper()
	run(t, "ip", "netns", "exec", tp.rtr, "conntrack", "-F")
}

// linkDown cuts (true) or restores (false) the site's way out.
func (tp *topology) linkDown(t *testing.T, down bool) {
	t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	run(t, "ip", "-n", tp.rtr, "link", "set", tp.rtrOut, state)
}

// inNS runs fn on an OS thread switched into namespace ns: sockets fn
// creates belong to ns for their whole life.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is not unlocked on purpose: Go then ends it instead
		// of handing a thread in a foreign namespace to other goroutines.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dialer dials TCP from inside a namespace.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// namespacesWork reports why this machine cannot run the suite, or "":
// every reason at once, so that one fix is not followed by another skip.
func namespacesWork() string {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root (network namespaces need CAP_NET_ADMIN)")
	}
	var missing []string
	for _, tool := range []string{"ip", "nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		why = append(why, fmt.Sprintf("%s not found on PATH (Debian: apt-get install iproute2 nftables conntrack)",
			strings.Join(missing, ", ")))
	}
	if len(why) > 0 {
		return strings.Join(why, "; ")
	}
	name := fmt.Sprintf("swprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	exec.Command("ip", "netns", "del", name).Run()
	return ""
}
