package cluster

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's own counters; the gauges below read raft directly.
type metrics struct {
	forwards *prometheus.CounterVec
	hold     prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_forward_requests_total",
			Help: "Writes this node forwarded to the leader, by outcome (ok, no_leader: none within the hold timeout, error).",
		}, []string{"outcome"}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mydata_hub_forward_hold_seconds",
			Help:    "Time a write waited for a leader (during an election) before it was applied or given up.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10},
		}),
	}
}

func (c *Cluster) registerMetrics(reg prometheus.Registerer) error {
	states := []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}
	var cs []prometheus.Collector
	for _, st := range states {
		st := st
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "mydata_hub_raft_state",
			Help:        "1 for the raft state this node is in, 0 for the others.",
			ConstLabels: prometheus.Labels{"state": st.String()},
		}, func() float64 {
			if c.raft.State() == st {
				return 1
			}
			return 0
		}))
	}
	cs = append(cs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_hub_raft_last_contact_seconds",
			Help: "Seconds since this node last heard from the leader; 0 on the leader.",
		}, func() float64 {
			if c.raft.State() == raft.Leader {
				return 0
			}
			lc := c.raft.LastContact()
			if lc.IsZero() {
				return -1
			}
			return time.Since(lc).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_hub_raft_applied_index",
			Help: "Index of the last raft entry applied to the state database.",
		}, func() float64 { return float64(c.fsm.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_hub_raft_has_leader",
			Help: "1 if this node knows a raft leader.",
		}, func() float64 {
			if c.Leader() != "" {
				return 1
			}
			return 0
		}),
	)
	cs = append(cs, c.metrics.forwards, c.metrics.hold,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_hub_raft_commit_index",
			Help: "The commit index this node knows.",
		}, func() float64 { return float64(c.Stats().CommitIndex) }),
		&serversCollector{c: c},
	)
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// serversCollector exports the configuration as this node sees it and, on the leader, each peer's health.
type serversCollector struct{ c *Cluster }

var (
	serversDesc = prometheus.NewDesc("mydata_hub_raft_servers", "Servers in the raft configuration, as this node sees it, by suffrage.", []string{"suffrage"}, nil)
	peerDesc    = prometheus.NewDesc("mydata_hub_cluster_peer_healthy", "On the leader: 1 if the peer answers, 0 if it does not.", []string{"peer"}, nil)
)

func (s *serversCollector) Describe(ch chan<- *prometheus.Desc) { ch <- serversDesc; ch <- peerDesc }

func (s *serversCollector) Collect(ch chan<- prometheus.Metric) {
	fut := s.c.raft.GetConfiguration()
	if fut.Error() == nil {
		var voters, nonvoters int
		for _, srv := range fut.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			} else {
				nonvoters++
			}
		}
		ch <- prometheus.MustNewConstMetric(serversDesc, prometheus.GaugeValue, float64(voters), "voter")
		ch <- prometheus.MustNewConstMetric(serversDesc, prometheus.GaugeValue, float64(nonvoters), "nonvoter")
	}
	if s.c.raft.State() != raft.Leader {
		return
	}
	for id, ok := range s.c.health.snapshot() {
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(peerDesc, prometheus.GaugeValue, v, id)
	}
}
