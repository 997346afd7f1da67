package connector

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/socket-warp/socket-warp/shared/metrics"
)

// maxDialTargets bounds the target label of the dial failures: the listener
// names the targets, and a confused or hostile one must not grow the
// connector's memory without end. Targets beyond it count under "other".
const maxDialTargets = 256

// Reconnect reasons: the fixed label set of socketwarp_connector_reconnects_total.
const (
	reconnectGoingAway     = "going_away"      // the listener restarts
	reconnectRefused       = "refused"         // the listener refused this connector
	reconnectTLS           = "tls"             // this connector refused the listener's certificate
	reconnectConnectFailed = "connect_failed"  // no connection came up
	reconnectIdleTimeout   = "idle_timeout"    // nothing heard from the listener
	reconnectReset         = "stateless_reset" // the listener restarted without closing the connection
	reconnectLost          = "lost"            // any other end of a connection
)

// Hand-over results: the label set of socketwarp_connector_handovers_total.
const (
	handOverOK     = "ok"     // a new connection took the old one's place
	handOverFailed = "failed" // the old connection stays
)

var handOverResults = [...]string{handOverOK, handOverFailed}

var reconnectReasons = [...]string{reconnectGoingAway, reconnectRefused, reconnectTLS, reconnectConnectFailed,
	reconnectIdleTimeout, reconnectReset, reconnectLost}

// reconnectReason sorts why Run is about to connect again.
func reconnectReason(err error, dialFailed bool) string {
	var idle *quic.IdleTimeoutError
	switch {
	case isGoingAway(err):
		return reconnectGoingAway
	case isRefusal(err):
		return reconnectRefused
	case isLocalTLSFailure(err):
		return reconnectTLS
	case dialFailed:
		return reconnectConnectFailed
	case errors.As(err, &idle):
		return reconnectIdleTimeout
	case isStatelessReset(err):
		return reconnectReset
	default:
		return reconnectLost
	}
}

// Stream outcomes: the fixed label set of socketwarp_connector_streams_total.
const (
	streamOK         = "ok"          // the target was dialled, the tunnel ran
	streamDialFailed = "dial_failed" // the target could not be dialled (or sent its PROXY header)
	streamForbidden  = "forbidden"   // SWC_ALLOW refuses the target
	streamBadHeader  = "bad_header"  // the header was unreadable, or asks for a PROXY header that cannot be made
	streamGoingAway  = "going_away"  // opened while this connector drains
)

var streamOutcomes = [...]string{streamOK, streamDialFailed, streamForbidden, streamBadHeader, streamGoingAway}

func metricName(name string) string { return metrics.Namespace + "_connector_" + name }

var (
	descConnected = prometheus.NewDesc(metricName("connected"),
		"1 while connected to the listener, else 0.", nil, nil)
	descReconnects = prometheus.NewDesc(metricName("reconnects_total"),
		"Connection attempts after a failure or the end of a connection, by reason.", []string{"reason"}, nil)
	descStreams = prometheus.NewDesc(metricName("streams"),
		"Tunnelled connections open now.", nil, nil)
	descBytes = prometheus.NewDesc(metricName("tunnel_bytes_total"),
		"Bytes tunnelled; direction up is client to target.", []string{"direction"}, nil)
	descStreamOutcomes = prometheus.NewDesc(metricName("streams_total"),
		"Streams the listener opened for a client, by outcome: ok (tunnelled), or why they were refused.", []string{"outcome"}, nil)
	descDialFailures = prometheus.NewDesc(metricName("dial_failures_total"),
		"Targets that could not be dialled, by target (host:port as the listener named it).", []string{"target"}, nil)
	descConnections = prometheus.NewDesc(metricName("connections"),
		"QUIC connections to the listener open now: 2 while an old one finishes its tunnels after a hand-over.", nil, nil)
	descHandOvers = prometheus.NewDesc(metricName("handovers_total"),
		"Moves to a new connection after the certificate changed, by result: ok, or failed (the old connection stays).",
		[]string{"result"}, nil)
)

// stats are the live counters behind the connector's metrics; the hot path
// touches atomics only, the collector reads them at scrape time.
type stats struct {
	connected  atomic.Bool
	streams    atomic.Int64
	bytesUp    atomic.Int64
	bytesDown  atomic.Int64
	reconnects [len(reconnectReasons)]atomic.Int64
	outcomes   [len(streamOutcomes)]atomic.Int64 // of streams, the log keeps a sample
	// connections is the QUIC connections being served; handOvers counts
	// hand-overs by result (handOverResults order).
	connections atomic.Int64
	handOvers   [len(handOverResults)]atomic.Int64

	mu         sync.Mutex       // guards dialFailed
	dialFailed map[string]int64 // by target, at most maxDialTargets+1 keys
}

func (s *stats) reconnect(reason string) { count(s.reconnects[:], reconnectReasons[:], reason) }

func (s *stats) stream(outcome string) { count(s.outcomes[:], streamOutcomes[:], outcome) }

func (s *stats) handOver(result string) { count(s.handOvers[:], handOverResults[:], result) }

// count adds one to the counter of label, the counters being in the order
// of labels; an unknown label counts nowhere.
func count(counters []atomic.Int64, labels []string, label string) {
	for i, l := range labels {
		if l == label {
			counters[i].Add(1)
			return
		}
	}
}

func (s *stats) dialFailure(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dialFailed == nil {
		s.dialFailed = map[string]int64{}
	}
	if _, ok := s.dialFailed[target]; !ok && len(s.dialFailed) >= maxDialTargets {
		target = "other"
	}
	s.dialFailed[target]++
}

func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descReconnects, descStreams, descStreamOutcomes, descBytes, descDialFailures,
		descConnections, descHandOvers} {
		ch <- d
	}
}

func (s *stats) Collect(ch chan<- prometheus.Metric) {
	connected := 0.0
	if s.connected.Load() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	for i, r := range reconnectReasons {
		ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(s.reconnects[i].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(s.streams.Load()))
	for i, o := range streamOutcomes {
		ch <- prometheus.MustNewConstMetric(descStreamOutcomes, prometheus.CounterValue, float64(s.outcomes[i].Load()), o)
	}
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.bytesUp.Load()), "up")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.bytesDown.Load()), "down")
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(s.connections.Load()))
	for i, r := range handOverResults {
		ch <- prometheus.MustNewConstMetric(descHandOvers, prometheus.CounterValue, float64(s.handOvers[i].Load()), r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for target, n := range s.dialFailed {
		ch <- prometheus.MustNewConstMetric(descDialFailures, prometheus.CounterValue, float64(n), target)
	}
}

// ready is /readyz: connected to the listener.
func (c *Connector) ready() error {
	if !c.stats.connected.Load() {
		return errors.New("not connected to the listener")
	}
	return nil
}

// Metrics is the connector's registry, for embedding and tests.
func (c *Connector) Metrics() *prometheus.Registry { return c.metrics }

// MetricsAddr is the bound address of SWC_METRICS_ADDR, nil without it.
func (c *Connector) MetricsAddr() net.Addr {
	if c.metricsSrv == nil {
		return nil
	}
	return c.metricsSrv.Addr()
}
