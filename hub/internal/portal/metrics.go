package portal

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	authorize *prometheus.CounterVec
	decisions *prometheus.CounterVec
	logins    *prometheus.CounterVec
	// loginFailures counts failed logins by method: a rise is an attack or a broken method.
	loginFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		authorize: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_authorize_requests_total",
			Help: "OAuth authorization requests by result (consent_page, login, error_page, redirect_error).",
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_consent_decisions_total",
			Help: "Citizens' decisions: approve, deny (consent pages), counter (counter codes taken), download (downloads made).",
		}, []string{"decision"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_logins_total",
			Help: "Citizen logins by method.",
		}, []string{"method"}),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_login_failures_total",
			Help: "Failed citizen logins by method (wrong code, refused certificate, documents not matching, ...).",
		}, []string{"method"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.authorize, m.decisions, m.logins, m.loginFailures} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
