package cluster

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

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
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
