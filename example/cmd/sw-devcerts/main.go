// Command sw-devcerts writes a throw-away CA, a listener certificate and a
// connector certificate, for the demo and for trying socket-warp out. Real
// deployments use openssl (see the README) or SCEP.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/socket-warp/socket-warp/shared/pki"
)

func main() {
	out := flag.String("out", ".", "directory to write ca.crt, server.crt/key and client.crt/key into")
	uid := flag.String("uid", "swc-1", "connector UID (the client certificate's CN)")
	names := flag.String("server-names", "localhost", "listener DNS names, comma separated")
	ips := flag.String("server-ips", "127.0.0.1", "listener IP addresses, comma separated")
	flag.Parse()
	if err := run(*out, *uid, split(*names), split(*ips)); err != nil {
		fmt.Fprintf(os.Stderr, "sw-devcerts: %v\n", err)
		os.Exit(1)
	}
}

func run(out, uid string, names, ipList []string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var ips []net.IP
	for _, s := range ipList {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("server IP %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	ca, err := pki.NewCA("socket-warp dev CA")
	if err != nil {
		return err
	}
	if _, err := ca.WriteCert(out, "ca"); err != nil {
		return err
	}
	cn := "localhost"
	if len(names) > 0 {
		cn = names[0]
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: cn, Usage: pki.Server, DNSNames: names, IPs: ips})
	if err != nil {
		return err
	}
	if _, _, err := server.WriteFiles(out, "server"); err != nil {
		return err
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: uid, Usage: pki.Client})
	if err != nil {
		return err
	}
	if _, _, err := client.WriteFiles(out, "client"); err != nil {
		return err
	}
	fmt.Printf("wrote %s/{ca.crt,server.crt,server.key,client.crt,client.key} (uid %s)\n", out, uid)
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
