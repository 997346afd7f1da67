package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/socket-warp/socket-warp/listener/api"
	"github.com/socket-warp/socket-warp/listener/auth"
	"github.com/socket-warp/socket-warp/listener/registry"
	"github.com/socket-warp/socket-warp/shared/logging"
	"github.com/socket-warp/socket-warp/shared/metrics"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// Connector refusal reasons beyond tlsutil's: the verdicts after the
// handshake. Together they are the fixed label set of
// socketwarp_listener_handshake_refusals_total.
const (
	reasonRevoked      = "revoked"            // the CRL lists it, or one of its CAs
	reasonSCEP         = "scep_verify_failed" // the SCEP verify endpoint said no, or nothing
	reasonDuplicateUID = "duplicate_uid"      // its UID is connected, and answers
	reasonBadUID       = "bad_uid"            // its CN is no UID the API could name (auth.ValidUID)
)

var refusalReasons = [...]string{
	tlsutil.ReasonNoCertificate, tlsutil.ReasonUnknownAuthority, tlsutil.ReasonExpired, tlsutil.ReasonBadUsage,
	reasonRevoked, reasonSCEP, reasonDuplicateUID, reasonBadUID, tlsutil.ReasonOther,
}

// refusalCounts counts refused connectors by reason (refusalReasons order).
type refusalCounts [len(refusalReasons)]atomic.Int64

func (r *refusalCounts) add(reason string) {
	for i, name := range refusalReasons {
		if name == reason {
			r[i].Add(1)
			return
		}
	}
	r[len(refusalReasons)-1].Add(1) // other
}

// apiRefusalCounts counts API requests refused before they reached a
// handler, by kind (api.RefusalReasons order).
type apiRefusalCounts [len(api.RefusalReasons)]atomic.Int64

func (r *apiRefusalCounts) add(reason string) {
	if i := slices.Index(api.RefusalReasons[:], reason); i >= 0 {
		r[i].Add(1)
	}
}

func metricName(name string) string { return metrics.Namespace + "_listener_" + name }

var (
	descConnectors = prometheus.NewDesc(metricName("connectors"),
		"Connectors connected now.", nil, nil)
	descPorts = prometheus.NewDesc(metricName("ports"),
		"Ports opened and listening now.", nil, nil)
	descPortsDown = prometheus.NewDesc(metricName("ports_down"),
		"Ports opened whose listening socket died or could not be bound at start, not listening until it is bound (GET /list says why).", nil, nil)
	descAcceptErrors = prometheus.NewDesc(metricName("accept_errors_total"),
		"Failed accepts on opened ports, by kind: temporary (no descriptor or memory left, a client gone; retried after a pause) or died (the socket is bound anew).",
		[]string{"kind"}, nil)
	descRebinds = prometheus.NewDesc(metricName("port_rebinds_total"),
		"Listening sockets of opened ports bound anew: dead ones, and stored ones not bound at start.", nil, nil)
	descTunnels = prometheus.NewDesc(metricName("tunnels"),
		"Tunnelled connections open now, by opened port.", []string{"uid", "port"}, nil)
	descBytes = prometheus.NewDesc(metricName("tunnel_bytes_total"),
		"Bytes tunnelled through an opened port since it was opened; direction up is client to target.",
		[]string{"uid", "port", "direction"}, nil)
	descOutcomes = prometheus.NewDesc(metricName("tunnel_connections_total"),
		"Clients of opened ports, by outcome: ok (tunnelled), or why they were reset.", []string{"outcome"}, nil)
	descRefusals = prometheus.NewDesc(metricName("handshake_refusals_total"),
		"Connectors refused, by reason.", []string{"reason"}, nil)
	descAPIRefusals = prometheus.NewDesc(metricName("api_refusals_total"),
		"API requests refused before they reached a handler, by reason: token, host, origin, content_type.", []string{"reason"}, nil)
	descRTT = prometheus.NewDesc(metricName("connector_rtt_seconds"),
		"Smoothed QUIC round-trip time to each connected connector.", []string{"uid"}, nil)
	descHandOvers = prometheus.NewDesc(metricName("connector_handovers_total"),
		"Connectors that moved to a new connection (new certificate) while their old one drained.", nil, nil)
	descDrainReplaced = prometheus.NewDesc(metricName("connector_drain_replacements_total"),
		"Connections whose connector said it is going away, replaced by a new one of the same UID while they drained.", nil, nil)
	descSurplusClosed = prometheus.NewDesc(metricName("predecessors_closed_total"),
		fmt.Sprintf("Connections left to drain (going away, or handed over) closed because newer ones of the same UID left more than %d of them.",
			registry.MaxPredecessors), nil, nil)
)

// initMetrics makes the listener's registry. Most figures are read at
// scrape time from the counters the daemon keeps anyway (atomics updated
// as bytes pass), so the hot path makes no metric calls of its own, and
// the series of a closed port or a gone connector simply stop being
// reported.
func (l *Listener) initMetrics() {
	l.metrics = metrics.NewRegistry()
	l.streamOpen = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: metricName("stream_open_seconds"),
		Help: "From accepting a client on an opened port until its stream to the connector is open and the header sent.",
		// 100µs to about 6.5s: loopback to a connector out of stream credit.
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
	})
	l.metrics.MustRegister(l.streamOpen, collector{l})
}

// collector reports the live figures of a Listener.
type collector struct{ l *Listener }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnectors, descPorts, descPortsDown, descAcceptErrors, descRebinds,
		descTunnels, descBytes, descOutcomes, descRefusals, descAPIRefusals, descRTT, descHandOvers,
		descDrainReplaced, descSurplusClosed} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	sessions := l.sessions.List()
	ch <- prometheus.MustNewConstMetric(descConnectors, prometheus.GaugeValue, float64(len(sessions)))
	for _, s := range sessions {
		rtt := s.Conn.ConnectionStats().SmoothedRTT
		ch <- prometheus.MustNewConstMetric(descRTT, prometheus.GaugeValue, rtt.Seconds(), s.UID)
	}
	type portFigures struct {
		uid, port                string
		active, bytesUp, bytesDn int64
	}
	bound, _, _ := l.ports.view()
	ports := make([]portFigures, 0, len(bound))
	down := 0
	for _, b := range bound {
		ports = append(ports, portFigures{b.spec.UID, strconv.Itoa(b.spec.Port), b.active.Load(), b.bytesUp.Load(), b.bytesDown.Load()})
		if b.notListening() != "" {
			down++
		}
	}
	ch <- prometheus.MustNewConstMetric(descPorts, prometheus.GaugeValue, float64(len(ports)-down))
	ch <- prometheus.MustNewConstMetric(descPortsDown, prometheus.GaugeValue, float64(down))
	for k := range numAcceptKinds {
		ch <- prometheus.MustNewConstMetric(descAcceptErrors, prometheus.CounterValue, float64(l.acceptErrors[k].Load()), acceptKindLabels[k])
	}
	ch <- prometheus.MustNewConstMetric(descRebinds, prometheus.CounterValue, float64(l.rebinds.Load()))
	for _, p := range ports {
		ch <- prometheus.MustNewConstMetric(descTunnels, prometheus.GaugeValue, float64(p.active), p.uid, p.port)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(p.bytesUp), p.uid, p.port, "up")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(p.bytesDn), p.uid, p.port, "down")
	}
	for o := range numOutcomes {
		ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(l.outcomes[o].Load()), outcomeLabels[o])
	}
	for i, reason := range refusalReasons {
		ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(l.refusedConnectors[i].Load()), reason)
	}
	for i, reason := range api.RefusalReasons {
		ch <- prometheus.MustNewConstMetric(descAPIRefusals, prometheus.CounterValue, float64(l.refusedRequests[i].Load()), reason)
	}
	ch <- prometheus.MustNewConstMetric(descHandOvers, prometheus.CounterValue, float64(l.handOvers.Load()))
	ch <- prometheus.MustNewConstMetric(descDrainReplaced, prometheus.CounterValue, float64(l.drainReplaced.Load()))
	ch <- prometheus.MustNewConstMetric(descSurplusClosed, prometheus.CounterValue, float64(l.surplusClosed.Load()))
}

// HandOvers is how many connectors moved to a new connection (see
// bindSession), for tests and embedding.
func (l *Listener) HandOvers() int64 { return l.handOvers.Load() }

// Metrics is the listener's registry, for embedding and tests.
func (l *Listener) Metrics() *prometheus.Registry { return l.metrics }

// MetricsAddr is the bound address of SWL_METRICS_ADDR, nil without it.
func (l *Listener) MetricsAddr() net.Addr {
	if l.metricsSrv == nil {
		return nil
	}
	return l.metricsSrv.Addr()
}

// ready is /readyz: the QUIC sockets and the state file are open from New
// on; the listener is ready once Run has restored the stored ports, until
// it shuts down, and for as long as every served port listens. A port whose
// socket died, or could not be bound at start, is not ready until it is
// bound: its clients are not
// served meanwhile, and a balancer may send them to another listener.
func (l *Listener) ready() error {
	bound, _, err := l.ports.view()
	if err != nil {
		return err
	}
	type portDown struct {
		port int
		why  string
	}
	var down []portDown
	for _, b := range bound {
		if why := b.notListening(); why != "" {
			down = append(down, portDown{b.spec.Port, why})
		}
	}
	if len(down) == 0 {
		return nil
	}
	sort.Slice(down, func(i, j int) bool { return down[i].port < down[j].port })
	why := make([]string, len(down))
	for i, d := range down {
		why[i] = fmt.Sprintf("port %d: %s", d.port, d.why)
	}
	return errors.New(strings.Join(why, "; "))
}

// handshakeRefused is told every client certificate the TLS handshake
// refuses (tlsutil): the one place such a refusal is logged and counted.
func (l *Listener) handshakeRefused(r tlsutil.Refusal) {
	remote := "unknown"
	if r.Remote != nil {
		remote = r.Remote.String()
	}
	l.refusedConnectors.add(r.Reason)
	msg := r.Err.Error()
	if len(msg) > 300 { // it may quote what the peer sent
		msg = msg[:300] + "…"
	}
	l.floodLog.Warn("connector refused", logging.Remote(remote), logging.Reason("TLS handshake: "+msg),
		zap.String("refusal", r.Reason))
}

// refuseConnector closes a connection refused after its handshake, logging
// and counting it under reason (one of refusalReasons). The line is sampled
// as the handshake's refusals are: a revoked certificate, say, can be
// presented as often as its holder likes.
func (l *Listener) refuseConnector(conn *quic.Conn, id []zap.Field, reason string, err error) {
	l.refusedConnectors.add(reason)
	l.floodLog.Warn("connector refused", append(id, logging.Reason(err.Error()), zap.String("refusal", reason))...)
	_ = conn.CloseWithError(wire.CodeUnauthorized, err.Error())
}

// verifyReason sorts a Verifier's refusal into a refusal reason.
func (l *Listener) verifyReason(state tls.ConnectionState, err error) string {
	switch {
	case errors.Is(err, auth.ErrRevoked):
		return reasonRevoked
	case errors.Is(err, auth.ErrBadUID):
		return reasonBadUID
	case l.crl != nil && l.crl.Check(state) != nil:
		return tlsutil.ReasonOther // no usable CRL
	case l.scep != nil:
		return reasonSCEP
	default:
		return tlsutil.ReasonOther
	}
}
