package identity

import "github.com/prometheus/client_golang/prometheus"

// hubMetrics are the hub client's.
type hubMetrics struct {
	failovers prometheus.Counter
}

func newHubMetrics(reg prometheus.Registerer) (*hubMetrics, error) {
	m := &hubMetrics{
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_hub_failovers_total",
			Help: "Times the connector moved to another hub node (of hub.url) because the one it used failed or another answered.",
		}),
	}
	if reg != nil {
		if err := reg.Register(m.failovers); err != nil {
			return nil, err
		}
	}
	return m, nil
}
