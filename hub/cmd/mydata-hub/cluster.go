package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// clusterStatus prints each raft server with what the answering node knows of it.
func (a *adminCtx) clusterStatus(ctx context.Context) error {
	var st api.ClusterStatus
	if err := a.client.Do(ctx, http.MethodGet, api.PathAdminCluster, nil, &st); err != nil {
		return err
	}
	apiURL := map[string]string{}
	for _, n := range st.Nodes {
		apiURL[n.ID] = n.APIURL
	}
	return a.print(st, func(w *table) {
		fmt.Fprintf(w, "NODE\tRAFT ADDRESS\tAPI\tROLE\tLAST CONTACT\tAPPLIED\tHEALTHY\n")
		for _, s := range st.Servers {
			role := "follower"
			switch {
			case s.Leader:
				role = "leader"
			case s.Suffrage == "nonvoter":
				role = "non-voter"
			}
			contact, applied := "-", "-"
			if s.Stats != nil {
				applied = fmt.Sprint(s.Stats.AppliedIndex)
				switch {
				case s.Stats.LastContactMS == 0:
					contact = "now"
				case s.Stats.LastContactMS > 0:
					contact = (time.Duration(s.Stats.LastContactMS) * time.Millisecond).String() + " ago"
				}
			}
			healthy := "yes"
			if !s.Healthy {
				healthy = "NO"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Address, apiURL[s.ID], role, contact, applied, healthy)
		}
		for _, n := range st.Nodes {
			if n.Status == "removed" {
				fmt.Fprintf(w, "%s\t%s\t%s\tremoved %s\t-\t-\t-\n", n.ID, n.RaftAddress, n.APIURL, n.RemovedAt.Format(time.RFC3339))
			}
		}
		fmt.Fprintf(w, "(answered by %s; leader %s)\n", st.Node, st.Leader)
	})
}

func (a *adminCtx) clusterJoinToken(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster join-token", flag.ContinueOnError)
	ttl := fs.Duration("ttl", 0, "token lifetime (default: tokens.default_ttl)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var resp hubapi.TokenResponse
	if err := a.client.Do(ctx, http.MethodPost, api.PathAdminNodeToken, api.NodeTokenRequest{TTLSeconds: int64(ttl.Seconds())}, &resp); err != nil {
		return err
	}
	return a.print(resp, func(w *table) { fmt.Fprintln(w, resp.Token) })
}

func (a *adminCtx) clusterRemove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster remove", flag.ContinueOnError)
	node := fs.String("node", "", "node id to remove")
	if err := parseFlags(fs, args, "node"); err != nil {
		return err
	}
	if err := a.client.Do(ctx, http.MethodPost, api.PathAdminRemove, api.RemoveRequest{Node: *node}, nil); err != nil {
		return err
	}
	return a.print(map[string]string{"removed": *node}, func(w *table) {
		fmt.Fprintf(w, "removed hub node %s: it left raft, its keys left the directory, and its SVID is refused\n", *node)
	})
}

func (a *adminCtx) keyringRotate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keyring rotate", flag.ContinueOnError)
	purpose := fs.String("purpose", "", "session, hint, subject or lookup")
	if err := parseFlags(fs, args, "purpose"); err != nil {
		return err
	}
	var resp api.RotateResponse
	if err := a.client.Do(ctx, http.MethodPost, api.PathAdminKeyring, api.RotateRequest{Purpose: *purpose}, &resp); err != nil {
		return err
	}
	return a.print(resp, func(w *table) {
		fmt.Fprintf(w, "new active %s key %s; the previous one still verifies until it is purged\n", resp.Purpose, resp.ID)
	})
}
