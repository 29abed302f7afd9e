package fsm

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func hasRole(q queryRower, org, name, role string) (status string, ok bool, err error) {
	var roles string
	err = q.QueryRow(`SELECT status, roles FROM connectors WHERE org = ? AND name = ?`, org, name).Scan(&status, &roles)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return status, slices.Contains(splitRoles(roles), role), nil
}

func applyDatasetAdd(tx *sql.Tx, c *DatasetAdd) (Result, bool, error) {
	d := c.Dataset
	if org, _, _ := strings.Cut(d.ID, "."); org != d.DPOrg {
		return refuse(Invalid, "id: dataset %q must be named after its data provider, %s.<name>", d.ID, d.DPOrg), false, nil
	}
	if r, ok, err := checkDPConnectors(tx, d.DPOrg, append([]string{d.DPConnector}, d.MoreDP...)); !ok || err != nil {
		return r, false, err
	}
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM datasets WHERE id = ?`, d.ID).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "dataset %q already exists", d.ID), false, nil
	}
	_, err := tx.Exec(`INSERT INTO datasets(id, name_zh, name_en, description, dp_org, dp_connector, min_aal, methods, content_type, async, status, created_at, download, more_dp)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.ID, d.NameZh, d.NameEn, d.Description, d.DPOrg, d.DPConnector, d.MinAAL, strings.Join(d.Methods, ","),
		d.ContentType, d.Async, hubapi.DatasetActive, ms(c.Now), d.Download, strings.Join(d.MoreDP, ","))
	return Result{}, err == nil, err
}

// checkDPConnectors refuses, naming it, a connector of org that does not exist, is revoked or lacks the dp
// role; the first is the dataset's dp_connector.
func checkDPConnectors(tx *sql.Tx, org string, names []string) (Result, bool, error) {
	for i, name := range names {
		key := "dp_connector"
		if i > 0 {
			key = fmt.Sprintf("more_dp_connectors[%d]", i-1)
		}
		st, isDP, err := hasRole(tx, org, name, hubapi.RoleDP)
		if err != nil {
			return Result{}, false, err
		}
		switch {
		case st == "":
			return refuse(NotFound, "%s: connector %s/%s does not exist", key, org, name), false, nil
		case st == hubapi.StatusRevoked:
			return refuse(Gone, "%s: connector %s/%s is revoked", key, org, name), false, nil
		case !isDP:
			return refuse(Invalid, "%s: connector %s/%s does not have the dp role", key, org, name), false, nil
		}
	}
	return Result{}, true, nil
}

func applyDatasetConnectors(tx *sql.Tx, c *DatasetConnectors) (Result, bool, error) {
	var org, first, more string
	err := tx.QueryRow(`SELECT dp_org, dp_connector, more_dp FROM datasets WHERE id = ?`, c.ID).Scan(&org, &first, &more)
	if errors.Is(err, sql.ErrNoRows) {
		return refuse(NotFound, "dataset %q does not exist", c.ID), false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if first == c.Connectors[0] && more == strings.Join(c.Connectors[1:], ",") {
		return refuse(Conflict, "dataset %q is already served by %s", c.ID, strings.Join(c.Connectors, ", ")), false, nil
	}
	if r, ok, err := checkDPConnectors(tx, org, c.Connectors); !ok || err != nil {
		return r, false, err
	}
	_, err = tx.Exec(`UPDATE datasets SET dp_connector = ?, more_dp = ? WHERE id = ?`, c.Connectors[0], strings.Join(c.Connectors[1:], ","), c.ID)
	return Result{}, false, err
}

func applyDatasetStatus(tx *sql.Tx, c *DatasetStatus) (Result, bool, error) {
	if c.Status != hubapi.DatasetActive && c.Status != hubapi.DatasetMaintenance {
		return refuse(Invalid, "status: %q is not active or maintenance", c.Status), false, nil
	}
	var cur string
	err := tx.QueryRow(`SELECT status FROM datasets WHERE id = ?`, c.ID).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return refuse(NotFound, "dataset %q does not exist", c.ID), false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if cur == c.Status {
		return refuse(Conflict, "dataset %q is already %s", c.ID, cur), false, nil
	}
	_, err = tx.Exec(`UPDATE datasets SET status = ? WHERE id = ?`, c.Status, c.ID)
	return Result{}, err == nil, err
}

func applyServiceAdd(tx *sql.Tx, c *ServiceAdd) (Result, bool, error) {
	s := c.Service.api()
	st, isSP, err := hasRole(tx, s.SPOrg, s.SPConnector, hubapi.RoleSP)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case st == "":
		return refuse(NotFound, "sp_connector: connector %s/%s does not exist", s.SPOrg, s.SPConnector), false, nil
	case st == hubapi.StatusRevoked:
		return refuse(Gone, "sp_connector: connector %s/%s is revoked", s.SPOrg, s.SPConnector), false, nil
	case !isSP:
		return refuse(Invalid, "sp_connector: connector %s/%s does not have the sp role", s.SPOrg, s.SPConnector), false, nil
	}
	for _, d := range s.Datasets {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM datasets WHERE id = ?`, d).Scan(&n); err != nil {
			return Result{}, false, err
		}
		if n == 0 {
			return refuse(NotFound, "datasets: %q does not exist", d), false, nil
		}
	}
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM services WHERE id = ?`, s.ID).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "service %q already exists", s.ID), false, nil
	}
	s.Status, s.CreatedAt = hubapi.StatusActive, c.Now.UTC()
	body, err := json.Marshal(&s)
	if err != nil {
		return Result{}, false, err
	}
	_, err = tx.Exec(`INSERT INTO services(id, body, sp_org, sp_connector, created_at) VALUES (?, ?, ?, ?, ?)`, s.ID, string(body), s.SPOrg, s.SPConnector, ms(c.Now))
	return Result{}, false, err
}

// Datasets lists the datasets.
func (f *FSM) Datasets() ([]hubapi.Dataset, error) { return f.datasets(`ORDER BY id`) }

// Dataset finds one dataset; nil if there is none.
func (f *FSM) Dataset(id string) (*hubapi.Dataset, error) {
	return cached(&f.lookups, "dataset\x00"+id, func() (*hubapi.Dataset, error) {
		ds, err := f.datasets(`WHERE id = ?`, id)
		if err != nil || len(ds) == 0 {
			return nil, err
		}
		return &ds[0], nil
	})
}

func (f *FSM) datasets(where string, args ...any) ([]hubapi.Dataset, error) {
	rows, err := f.db.Query(`SELECT id, name_zh, name_en, description, dp_org, dp_connector, min_aal, methods, content_type, async, status, created_at, download, stage, more_dp FROM datasets `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.Dataset{}
	for rows.Next() {
		var d hubapi.Dataset
		var created int64
		var methods, more string
		if err := rows.Scan(&d.ID, &d.NameZh, &d.NameEn, &d.Description, &d.DPOrg, &d.DPConnector, &d.MinAAL, &methods, &d.ContentType, &d.Async, &d.Status, &created, &d.Download, &d.Stage, &more); err != nil {
			return nil, err
		}
		if more != "" {
			d.MoreDPConnectors = strings.Split(more, ",")
		}
		if methods != "" {
			d.Methods = strings.Split(methods, ",")
		}
		d.CreatedAt = fromMS(created)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Services lists the services.
func (f *FSM) Services() ([]hubapi.Service, error) { return f.services(`ORDER BY id`) }

// Service finds one service; nil if there is none.
func (f *FSM) Service(id string) (*hubapi.Service, error) {
	return cached(&f.lookups, "service\x00"+id, func() (*hubapi.Service, error) {
		ss, err := f.services(`WHERE id = ?`, id)
		if err != nil || len(ss) == 0 {
			return nil, err
		}
		return &ss[0], nil
	})
}

func (f *FSM) services(where string, args ...any) ([]hubapi.Service, error) {
	rows, err := f.db.Query(`SELECT body FROM services `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.Service{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var s hubapi.Service
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
