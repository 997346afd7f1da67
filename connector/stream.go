package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/connector/policy"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/relay"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// handleStream reads the header, dials the target, sends the verdict, relays.
func (c *Connector) handleStream(ctx context.Context, lk *link, st *quic.Stream) {
	start := time.Now()
	// Fields rather than a child logger: zap's With encodes them into a
	// buffer of its own, which an idle tunnel would hold for its lifetime.
	id := make([]zap.Field, 0, 8)
	id = append(id, logging.Stream(int64(st.StreamID())))
	tc, id := relay.SetUp(id, func(id []zap.Field) (*net.TCPConn, []zap.Field) { return c.openTarget(ctx, lk, st, start, id) })
	if tc == nil {
		return
	}
	c.stats.stream(streamOK)
	c.stats.streams.Add(1)
	res := relay.Relay(ctx, &okFirst{Conn: relay.Stream(st)}, relay.TCP(tc), relay.Counters{AToB: &c.stats.bytesUp, BToA: &c.stats.bytesDown})
	c.stats.streams.Add(-1)
	c.floodLog.Info("tunnel closed", append(id, logging.BytesUp(res.AToB), logging.BytesDown(res.BToA),
		logging.Duration(time.Since(start)), logging.Reason(streamReason(res.Err)))...)
}

// openTarget reads the stream's header and dials its target. It answers and
// ends the stream itself and returns nil when it refuses it; a probe and a
// hand-over notice are answered the same way. It returns id with the
// stream's target, client and port appended once it knows them.
func (c *Connector) openTarget(ctx context.Context, lk *link, st *quic.Stream, start time.Time, id []zap.Field) (*net.TCPConn, []zap.Field) {
	// A listener that opens a stream and sends nothing must not pin this
	// goroutine forever.
	_ = st.SetReadDeadline(start.Add(time.Duration(c.cfg.HeaderTimeout)))
	hdr, err := wire.ReadHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		c.stats.stream(streamBadHeader)
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.floodLog.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil, id
	}
	if hdr.Probe {
		// The listener asks whether this connection is still alive
		// (another connection with this UID arrived): yes, and nothing
		// to dial. refuse answers and ends the stream the same way for
		// any verdict. During a hand-over the answer names the one
		// certificate that may take this connection's place.
		v, reason := wire.VerdictOK, ""
		if fp := lk.successor.Load(); fp != nil {
			v, reason = wire.VerdictHandingOver, *fp
		}
		c.refuse(st, v, reason)
		c.log.Debug("probe answered", append(id, zap.Stringer("verdict", v))...)
		return nil, id
	}
	if hdr.HandedOver {
		// The new connection took this one's place. Honoured only when
		// this connector announced it: nobody else may make it drain.
		if lk.successor.Load() == nil {
			reason := "hand-over notice, but no hand-over was announced"
			c.refuse(st, wire.VerdictBadHeader, reason)
			c.log.Warn("stream refused", append(id, logging.Reason(reason))...)
			return nil, id
		}
		c.refuse(st, wire.VerdictOK, "")
		lk.notice.Do(func() { close(lk.handedOver) })
		return nil, id
	}
	target := net.JoinHostPort(hdr.TargetHost, strconv.Itoa(int(hdr.TargetPort)))
	id = append(id, logging.Target(target), logging.Remote(hdr.ClientAddr), logging.Port(int(hdr.OpenedPort)))
	// Before dialling: a target that expects a PROXY header must get a
	// true one or no connection at all.
	proxyHdr, err := proxyHeader(hdr)
	if err != nil {
		c.stats.stream(streamBadHeader)
		c.refuse(st, wire.VerdictBadHeader, err.Error())
		c.floodLog.Warn("stream refused", append(id, logging.Reason(err.Error()))...)
		return nil, id
	}

	tc, err := c.dial(ctx, hdr, target)
	var refusal *policy.Refusal
	if errors.As(err, &refusal) {
		// The listener learns that much and no more: the detail may say
		// what an internal name resolves to.
		reason := fmt.Sprintf("target %s is not allowed by SWC_ALLOW", target)
		c.stats.stream(streamForbidden)
		c.refuse(st, wire.VerdictForbidden, reason)
		c.floodLog.Warn("stream refused", append(id, logging.Reason(reason+": "+refusal.Detail))...)
		return nil, id
	}
	if err != nil {
		c.stats.dialFailure(target)
		c.stats.stream(streamDialFailed)
		reason := fmt.Sprintf("dial %s: %v", target, unwrapOpError(err))
		c.refuse(st, wire.VerdictDialFailed, reason)
		c.floodLog.Warn("stream refused", append(id, logging.Reason(reason))...)
		return nil, id
	}
	if proxyHdr != nil {
		if _, err := proxyHdr.WriteTo(tc); err != nil {
			tc.Close()
			reason := fmt.Sprintf("write PROXY header to %s: %v", target, unwrapOpError(err))
			c.stats.stream(streamDialFailed)
			c.refuse(st, wire.VerdictDialFailed, reason)
			c.floodLog.Warn("stream refused", append(id, logging.Reason(reason))...)
			return nil, id
		}
	}
	c.floodLog.Info("tunnel opened", id...)
	return tc, id
}

// okFirst sends the ok verdict with the target's first bytes (or its FIN)
// rather than in a packet of its own: the listener needs it only before it
// relays those bytes, and the client's bytes flow without waiting for it.
type okFirst struct {
	relay.Conn
	sent bool // only the relay's target→stream direction writes
}

func (o *okFirst) Write(p []byte) (int, error) {
	if o.sent {
		return o.Conn.Write(p)
	}
	o.sent = true
	n, err := o.Conn.Write(append(wire.AppendVerdict(make([]byte, 0, 1+len(p)), wire.VerdictOK, ""), p...))
	return max(n-1, 0), err
}

func (o *okFirst) CloseWrite() error {
	if !o.sent {
		if _, err := o.Write(nil); err != nil {
			return err
		}
	}
	return o.Conn.CloseWrite()
}

// refuse sends a failure verdict and ends the stream. It drains, for a short
// while, what the listener pipelined behind the header: stopping the read at
// once would make the listener fail on its write and lose the verdict's reason.
func (c *Connector) refuse(st *quic.Stream, v wire.Verdict, reason string) {
	_, _ = st.Write(wire.AppendVerdict(nil, v, reason))
	_ = st.Close()
	_ = st.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := st.Read(buf); err != nil {
			break
		}
	}
	st.CancelRead(quic.StreamErrorCode(wire.StreamCodeRefused))
}
