package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a reload, the values of mydata_connector_config_reloads_total's result label.
const (
	reloadOK    = "ok"
	reloadError = "error"
)

// reloadable is the one top-level key a running connector takes from a reloaded file; every other key
// needs a restart.
const reloadable = "datasets"

// reloader applies a configuration file read again while the connector runs (SIGHUP): the datasets and
// their backends change in place; a change to any other key is logged as needing a restart. A file that
// does not load, or a backend that cannot be opened, is refused whole and the settings in force stay.
type reloader struct {
	// running is the configuration the process started with; its datasets are those of the last
	// successful reload.
	running config.Config
	load    func() (config.Config, error)
	// apply opens the backends of datasets and puts them in force.
	apply func(datasets map[string]config.Dataset) error
	log   *slog.Logger
	now   func() time.Time

	reloads    *prometheus.CounterVec
	successful prometheus.Gauge
	lastOK     prometheus.Gauge
}

func newReloader(running config.Config, load func() (config.Config, error), apply func(map[string]config.Dataset) error,
	log *slog.Logger, reg prometheus.Registerer) (*reloader, error) {
	r := &reloader{running: running, load: load, apply: apply, log: log, now: time.Now,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_config_reloads_total",
			Help: "Reloads of the configuration file (SIGHUP), by result: ok (the datasets in the file are in force), error (refused; the settings in force stay).",
		}, []string{"result"}),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mydata_connector_config_last_reload_successful",
			Help: "1 if the last reload of the configuration file was applied (or none was asked for), 0 if it was refused.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mydata_connector_config_last_reload_success_timestamp_seconds",
			Help: "Unix time the configuration in force was read: at start, then at each successful reload.",
		}),
	}
	for _, res := range []string{reloadOK, reloadError} {
		r.reloads.WithLabelValues(res)
	}
	r.successful.Set(1)
	r.lastOK.Set(float64(r.now().Unix()))
	for _, c := range []prometheus.Collector{r.reloads, r.successful, r.lastOK} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// run reloads at each signal on sig until ctx ends.
func (r *reloader) run(ctx context.Context, sig <-chan os.Signal) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sig:
			_ = r.reload()
		}
	}
}

// reload reads the file again and applies it, or refuses it and says why.
func (r *reloader) reload() error {
	err := r.reloadOnce()
	if err != nil {
		r.reloads.WithLabelValues(reloadError).Inc()
		r.successful.Set(0)
		r.log.Error("configuration reload refused; the settings in force stay", telemetry.KeyError, err)
		return err
	}
	r.reloads.WithLabelValues(reloadOK).Inc()
	r.successful.Set(1)
	r.lastOK.Set(float64(r.now().Unix()))
	return nil
}

func (r *reloader) reloadOnce() error {
	cfg, err := r.load()
	if err != nil {
		return err
	}
	added, removed, changed := diffDatasets(r.running.Datasets, cfg.Datasets)
	if err := r.apply(cfg.Datasets); err != nil {
		return err
	}
	r.running.Datasets = cfg.Datasets
	r.log.Info("configuration reloaded: datasets in force", "datasets", strings.Join(sortedKeys(cfg.Datasets), ","),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "changed", strings.Join(changed, ","))
	if keys := restartKeys(r.running, cfg); len(keys) > 0 {
		r.log.Warn("configuration reload: these settings changed in the file but take effect only after a restart; the running values stay until then",
			"keys", strings.Join(keys, ","))
	}
	return nil
}

// openDatasets opens a backend for each dataset. If one fails, those opened are closed and the error names
// the dataset's key.
func openDatasets(ds map[string]config.Dataset) (map[string]provider.Dataset, error) {
	out := make(map[string]provider.Dataset, len(ds))
	for _, id := range sortedKeys(ds) {
		d := ds[id]
		b, err := backend.New(d.Backend)
		if err != nil {
			for _, o := range out {
				o.Backend.Close()
			}
			return nil, fmt.Errorf("datasets.%s.backend: %w", id, err)
		}
		out[id] = provider.Dataset{Backend: b, MaxBytes: d.MaxBytes}
		if d.Sandbox != nil {
			sb, err := backend.New(*d.Sandbox)
			if err != nil {
				for _, o := range out {
					o.Backend.Close()
				}
				return nil, fmt.Errorf("datasets.%s.sandbox: %w", id, err)
			}
			out[provider.SandboxKey(id)] = provider.Dataset{Backend: sb, MaxBytes: d.MaxBytes}
		}
	}
	return out, nil
}

// diffDatasets names the datasets added, removed and changed from old to next.
func diffDatasets(old, next map[string]config.Dataset) (added, removed, changed []string) {
	for _, id := range sortedKeys(next) {
		o, ok := old[id]
		switch {
		case !ok:
			added = append(added, id)
		case !reflect.DeepEqual(o, next[id]):
			changed = append(changed, id)
		}
	}
	for _, id := range sortedKeys(old) {
		if _, ok := next[id]; !ok {
			removed = append(removed, id)
		}
	}
	return added, removed, changed
}

// restartKeys names, by their YAML paths (quic.listen, data_dir), the values that differ between the running
// configuration and the file, apart from the datasets, which a reload applies.
func restartKeys(running, file config.Config) []string {
	var keys []string
	var walk func(a, b reflect.Value, path string)
	walk = func(a, b reflect.Value, path string) {
		t := a.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if !t.Field(i).IsExported() || name == "" || name == "-" || path == "" && name == reloadable {
				continue
			}
			key := name
			if path != "" {
				key = path + "." + name
			}
			fa, fb := a.Field(i), b.Field(i)
			if fa.Kind() == reflect.Struct {
				walk(fa, fb, key)
				continue
			}
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.ValueOf(running), reflect.ValueOf(file), "")
	return keys
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ReloadOn makes Run reload the configuration at each signal on sig (SIGHUP): load reads the file as at
// start. Only the datasets and their backends change while running; see reloader.
func (a *Agent) ReloadOn(sig <-chan os.Signal, load func() (config.Config, error)) {
	a.reloadSig, a.reloader.load = sig, load
}

// applyDatasets opens the backends of datasets and puts them in force; transfers running keep theirs.
func (a *Agent) applyDatasets(datasets map[string]config.Dataset) error {
	m, err := openDatasets(datasets)
	if err != nil {
		return err
	}
	a.provider.SetDatasets(m)
	return nil
}
