package agent

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/counter"
	"github.com/prometheus/client_golang/prometheus"
)

// openCounter makes the counter page and binds its listener, if counter.listen is set.
func (a *Agent) openCounter(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) error {
	k := cfg.Counter
	if k.Listen == "" {
		return nil
	}
	loc, err := time.LoadLocation(k.TimeZone)
	if err != nil {
		return fmt.Errorf("counter.time_zone: %w", err)
	}
	if k.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(k.TLSCert, k.TLSKey)
		if err != nil {
			return fmt.Errorf("counter.tls_cert, counter.tls_key: %w", err)
		}
		a.counterCert = &cert
	}
	if a.counter, err = counter.New(counter.Config{
		Hub: a.hub, Exchanges: a.exchanges, StaffFile: k.StaffFile, TTL: k.TTL, IdleTimeout: k.IdleTimeout,
		LockoutAfter: k.LockoutAfter, LockoutFor: k.LockoutFor, Location: loc, Secure: k.TLSCert != "",
		Log: log, Registerer: reg,
	}); err != nil {
		return err
	}
	if a.counterLn, err = net.Listen("tcp", k.Listen); err != nil {
		return fmt.Errorf("counter.listen %s: %w", k.Listen, err)
	}
	return nil
}
