package identity

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SPIRE is the SVID and bundle served by a SPIRE agent's Workload API; the agent renews them.
type SPIRE struct {
	*workloadapi.X509Source
}

// NewSPIRE connects to the Workload API at addr (unix:///path or tcp://host:port) and waits for the first
// SVID. The SVID must be for id: a SPIRE registration entry for another ID is a configuration mistake.
func NewSPIRE(ctx context.Context, addr string, id spiffeid.ID) (*SPIRE, error) {
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		return nil, fmt.Errorf("SPIRE Workload API %s: %w", addr, err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		src.Close()
		return nil, err
	}
	if svid.ID != id {
		src.Close()
		return nil, fmt.Errorf("SPIRE gave this workload %s, but the config names %s", svid.ID, id)
	}
	return &SPIRE{X509Source: src}, nil
}

// Run implements Source: the agent pushes renewals, so there is nothing to do but wait.
func (s *SPIRE) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
