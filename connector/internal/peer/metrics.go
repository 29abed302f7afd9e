package peer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	handshakes *prometheus.CounterVec
	open       prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_quic_handshakes_total",
			Help: "QUIC handshakes with peers by direction (in, out) and outcome (ok, refused, error).",
		}, []string{"direction", "outcome"}),
	}
	if reg != nil {
		if err := reg.Register(m.handshakes); err != nil {
			return nil, err
		}
	}
	return m, nil
}
