package exchange

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	exchanges *prometheus.CounterVec
	datasets  *prometheus.CounterVec
	bytes     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_exchanges_total",
			Help: "Exchanges started by the SP's application, by result (redeemed, refused, hub_unreachable).",
		}, []string{"result"}),
		datasets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_sp_datasets_total",
			Help: "Datasets fetched as a service provider by status (delivered, no_record, pending, unavailable, failed).",
		}, []string{"status"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_sp_bytes_total",
			Help: "Verified plaintext bytes received as a service provider.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.exchanges, m.datasets, m.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
