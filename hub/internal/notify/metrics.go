package notify

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sends *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_notify_sends_total",
			Help: "Messages sent to citizens by channel (mail, sms) and result (ok, temporary, permanent).",
		}, []string{"channel", "result"}),
	}
	if reg != nil {
		if err := reg.Register(m.sends); err != nil {
			return nil, err
		}
	}
	return m, nil
}
