package peer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	handshakes    *prometheus.CounterVec
	tcpHandshakes *prometheus.CounterVec
	// fallbacks counts dials that went to TCP, by why: the QUIC handshake was late (race) or had failed
	// lately (memory).
	fallbacks *prometheus.CounterVec
	open      prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_quic_handshakes_total",
			Help: "QUIC handshakes with peers by direction (in, out) and outcome (ok, refused, error).",
		}, []string{"direction", "outcome"}),
		tcpHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_tcp_handshakes_total",
			Help: "TLS-over-TCP handshakes with peers by direction (in, out) and outcome (ok, refused, error).",
		}, []string{"direction", "outcome"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_tcp_fallbacks_total",
			Help: "Dials to a peer that went to TCP, by reason: race (no QUIC handshake within the fallback delay), memory (QUIC failed with this peer lately), quic_failed (the QUIC handshake failed at once).",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.handshakes, m.tcpHandshakes, m.fallbacks} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
