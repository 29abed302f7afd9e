package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// hubClaims claims tickets through the hub's API.
type hubClaims struct{ hub *hubapi.Client }

// HubClient claims tickets at the hub hub.
func HubClient(hub *hubapi.Client) HubClaims { return hubClaims{hub} }

func (h hubClaims) Claim(ctx context.Context, token string) error {
	err := h.hub.Do(ctx, http.MethodPost, hubapi.PathTicketClaim, hubapi.TicketClaimRequest{Ticket: token}, nil)
	var he *hubapi.Error
	if errors.As(err, &he) && (he.Status == http.StatusConflict || he.Status == http.StatusGone) {
		return fmt.Errorf("%w: %s", ErrTaken, he.Message)
	}
	return err
}

func (h hubClaims) Release(ctx context.Context, token string, spent bool) error {
	return h.hub.Do(ctx, http.MethodPost, hubapi.PathTicketRelease, hubapi.TicketReleaseRequest{Ticket: token, Spent: spent}, nil)
}
