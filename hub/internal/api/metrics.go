package api

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	enrollments *prometheus.CounterVec
	renewals    *prometheus.CounterVec
	dirServed   *prometheus.CounterVec
	redeems     *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	receipts    *prometheus.CounterVec
	// ticketClaims counts claims of tickets several connectors may serve (connector HA).
	ticketClaims *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_enrollments_total",
			Help: "Enrollment requests by outcome (ok, invalid_request, invalid_token, expired_token, wrong_connector, wrong_spiffe_id, connector_not_active, refused, internal).",
		}, []string{"outcome"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_svid_renewals_total",
			Help: "SVID renewal requests by outcome.",
		}, []string{"outcome"}),
		dirServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_directory_requests_total",
			Help: "Directory requests by result (full, not_modified).",
		}, []string{"result"}),
	}
	m.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_hub_par_requests_total",
		Help: "Pushed authorization requests (RFC 9126) by result (ok, or the OAuth error code).",
	}, []string{"result"})
	m.redeems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_hub_redemptions_total",
		Help: "Authorization code redemptions by result (ok, invalid_grant, wrong_client).",
	}, []string{"result"})
	m.receipts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_hub_receipts_total",
		Help: "Transfer receipts recorded, by reporting role (dp, sp).",
	}, []string{"role"})
	m.ticketClaims = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_hub_ticket_claims_total",
		Help: "Claims of tickets that several DP connectors may serve, by result (claimed; taken: another connector serves or served it; refused: not a valid claim).",
	}, []string{"result"})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.enrollments, m.renewals, m.dirServed, m.redeems, m.pushes, m.receipts, m.ticketClaims} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
