package connector

import (
	"context"
	"net"
	"time"

	"github.com/socket-warp/socket-warp/shared/wire"
)

// dial connects to the target. With a policy, the policy decides, before
// anything is dialled, and the connector dials exactly the addresses it
// checked: the target name is looked up once, here, and never again.
func (c *Connector) dial(ctx context.Context, hdr wire.Header, target string) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.cfg.DialTimeout))
	defer cancel()
	var d net.Dialer
	if c.allow == nil {
		tc, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		return tc.(*net.TCPConn), nil
	}
	addrs, err := c.allow.Addrs(ctx, c.resolver, hdr.TargetHost, hdr.TargetPort)
	if err != nil {
		return nil, err
	}
	// One address after the other, each with its share of the time left,
	// as net.Dialer does with the addresses of a name.
	var first error
	for i, a := range addrs {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			share := time.Until(deadline) / time.Duration(len(addrs)-i)
			actx, cancel = context.WithTimeout(ctx, max(share, min(2*time.Second, time.Until(deadline))))
		}
		tc, err := d.DialContext(actx, "tcp", a.String())
		cancel()
		if err == nil {
			return tc.(*net.TCPConn), nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}
