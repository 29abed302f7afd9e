package exchange

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	exchanges *prometheus.CounterVec
	datasets  *prometheus.CounterVec
	bytes     prometheus.Counter
	spills    prometheus.Counter
	spilled   prometheus.Gauge
	failovers prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_exchanges_total",
			Help: "Exchanges started by the SP's application, by result (redeemed, refused, hub_unreachable).",
		}, []string{"result"}),
		datasets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_sp_datasets_total",
			Help: "Datasets fetched as a service provider by status (delivered, no_record, pending, unavailable, failed) and the transport that carried the last attempt (quic, tcp; empty if none connected).",
		}, []string{"status", "transport"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_sp_bytes_total",
			Help: "Verified plaintext bytes received as a service provider.",
		}),
		spills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_sp_spills_total",
			Help: "Results of POST /v1/exchanges larger than exchange.spill_threshold, kept sealed in a spill file for the application to read at their content URL.",
		}),
		spilled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mydata_connector_sp_spill_bytes",
			Help: "Bytes of spill files under data_dir/spill waiting to be read (sealed size).",
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_sp_failovers_total",
			Help: "Times a dataset served by several DP connectors went to the next one because one could not be reached or failed before it sent anything.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.exchanges, m.datasets, m.bytes, m.spills, m.spilled, m.failovers} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
