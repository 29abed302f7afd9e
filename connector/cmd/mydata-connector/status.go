package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/agent"
	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/dirsync"
	"github.com/mydatafed/mydata/connector/internal/peer"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

func status(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	path := configFlag(fs)
	peerName := fs.String("peer", "", "ping this connector over QUIC: ORG/NAME, or NAME if unique")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(io.Discard, cfg.Log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, hub, err := agent.OpenIdentity(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	leaf := svid.Certificates[0]
	fmt.Fprintf(out, "spiffe id:       %s\n", svid.ID)
	fmt.Fprintf(out, "identity source: %s\n", cfg.Identity.Source)
	fmt.Fprintf(out, "svid expires:    %s (in %s)\n", leaf.NotAfter.Format(time.RFC3339), time.Until(leaf.NotAfter).Round(time.Second))

	if urls := hub.URLs(); len(urls) > 1 {
		fmt.Fprintf(out, "hub nodes:       %s\n", strings.Join(urls, ", "))
	}
	// Long enough to leave one node that is down or hangs (a dial or handshake timeout) for the next.
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	var h hubapi.Health
	herr := hub.Do(hctx, http.MethodGet, hubapi.PathHealth, nil, &h)
	hcancel()
	if herr != nil {
		fmt.Fprintf(out, "hub:             unreachable: %v\n", herr)
	} else {
		fmt.Fprintf(out, "hub:             reachable at %s (node %s, %s, leader %s)\n", hub.Current(), h.Node, h.RaftState, h.Leader)
	}

	dir, err := dirsync.New(dirsync.Config{TD: cfg.TD(), Path: cfg.DirectoryPath(), Hub: hub, Bundles: src,
		SyncInterval: cfg.Directory.SyncInterval, Refresh: cfg.Directory.Refresh, Log: log})
	if err != nil {
		return err
	}
	if doc := dir.Document(); doc == nil {
		fmt.Fprintln(out, "directory:       none yet (is `serve` running and the hub reachable?)")
	} else {
		age, _ := dir.Age()
		state := "valid"
		if err := dir.Ready(); err != nil {
			state = err.Error()
		}
		fmt.Fprintf(out, "directory:       version %d, %d connectors, age %s, expires %s (%s)\n",
			doc.Version, len(doc.Connectors), age.Round(time.Second), doc.ExpiresAt.Format(time.RFC3339), state)
	}
	if *peerName == "" {
		return nil
	}
	target, err := findPeer(dir, *peerName)
	if err != nil {
		return err
	}
	node, err := peer.Listen(peer.Config{Listen: "127.0.0.1:0", QUICOff: !cfg.QUIC.Enabled, TCPOff: !cfg.TCP.Enabled, TD: cfg.TD(), SVID: src, Bundles: src, IdleTimeout: 10 * time.Second,
		Authorize: dir.Authorize, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	nctx, ncancel := context.WithCancel(ctx)
	defer ncancel()
	go node.Run(nctx)
	id, _ := fedid.Connector(cfg.TD(), target.Org, target.Name)
	conn, err := node.Connect(ctx, peer.Addrs{QUIC: target.Address, TCP: target.TCPAddress}, id)
	if err != nil {
		return fmt.Errorf("peer %s: %w", id, err)
	}
	rtt, err := peer.Ping(ctx, conn)
	if err != nil {
		return fmt.Errorf("peer %s: ping: %w", id, err)
	}
	conn.Close()
	addr := target.Address
	if conn.Transport() == peer.TransportTCP {
		addr = target.TCPAddress
	}
	fmt.Fprintf(out, "peer:            %s at %s answered ping over %s in %s\n", id, addr, conn.Transport(), rtt.Round(time.Microsecond))
	return nil
}

func findPeer(dir *dirsync.Sync, name string) (hubapi.Connector, error) {
	if org, n, ok := strings.Cut(name, "/"); ok {
		c, found := dir.Lookup(org, n)
		if !found {
			return c, fmt.Errorf("no connector %s in the directory", name)
		}
		return c, nil
	}
	doc := dir.Document()
	if doc == nil {
		return hubapi.Connector{}, errors.New("no directory to find the peer in")
	}
	var matches []hubapi.Connector
	for _, c := range doc.Connectors {
		if c.Name == name {
			matches = append(matches, c)
		}
	}
	switch len(matches) {
	case 0:
		return hubapi.Connector{}, fmt.Errorf("no connector named %q in the directory", name)
	case 1:
		return matches[0], nil
	}
	return hubapi.Connector{}, fmt.Errorf("%d connectors are named %q: give ORG/NAME", len(matches), name)
}
