package counter

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	redemptions *prometheus.CounterVec
	logins      *prometheus.CounterVec
	purges      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, st *store) (*metrics, error) {
	m := &metrics{
		redemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_counter_redemptions_total",
			Help: "Codes entered on the counter page, by result (redeemed, otp_required, otp_wrong, invalid_code, code_used, wrong_client, hub_locked, locked_here, malformed, refused, hub_unreachable).",
		}, []string{"result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_counter_logins_total",
			Help: "Staff logins on the counter page, by result (ok, wrong, locked).",
		}, []string{"result"}),
		purges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_counter_purges_total",
			Help: "Counter terminals' data overwritten and dropped, by cause (done, logout, ttl, session_end, replaced, shutdown).",
		}, []string{"cause"}),
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mydata_connector_counter_held_bytes",
		Help: "Bytes of citizens' data the counter page holds in memory now; 0 once every terminal pressed Done or timed out.",
	}, func() float64 { return float64(st.heldBytes()) })
	terminals := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mydata_connector_counter_held_terminals",
		Help: "Counter terminals holding a redeemed code's data now.",
	}, func() float64 { return float64(st.count()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.redemptions, m.logins, m.purges, held, terminals} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
