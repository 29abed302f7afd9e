package fsm

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/mydatafed/mydata/hub/internal/oplog"
)

// admin is an admin command that an OperatorAction may carry: how to validate and apply its payload, and
// how to read the row it changes before and after (nil when it changes no single row worth showing).
type admin struct {
	validate func(payload []byte) error
	apply    handler
	row      func(tx *sql.Tx, payload []byte) (string, error)
}

// adminCommand makes the admin entry of a command type. row reads the changed row as JSON given the
// command; nil for none.
func adminCommand[T any, P interface {
	*T
	Command
}](apply func(tx *sql.Tx, cmd P) (Result, bool, error), row func(tx *sql.Tx, cmd P) (string, error)) admin {
	decode := func(payload []byte) (P, error) {
		var cmd T
		if err := json.Unmarshal(payload, &cmd); err != nil {
			return nil, fmt.Errorf("decode %T: %w", cmd, err)
		}
		return &cmd, nil
	}
	a := admin{
		validate: func(payload []byte) error {
			cmd, err := decode(payload)
			if err != nil {
				return err
			}
			return cmd.Validate()
		},
		apply: func(tx *sql.Tx, payload []byte) (Result, bool, error) {
			cmd, err := decode(payload)
			if err != nil {
				return Result{}, false, err
			}
			return apply(tx, cmd)
		},
	}
	if row != nil {
		a.row = func(tx *sql.Tx, payload []byte) (string, error) {
			cmd, err := decode(payload)
			if err != nil {
				return "", err
			}
			return row(tx, cmd)
		}
	}
	return a
}

// wrappable is every command an operator's action may carry. It is a table of its own rather than a
// lookup in registry, which would make registry's initialisation depend on itself.
var wrappable = map[Type]admin{
	TypeOrgAdd: adminCommand(applyOrgAdd, func(tx *sql.Tx, c *OrgAdd) (string, error) {
		return rowJSON(tx, `SELECT * FROM orgs WHERE code = ?`, c.Code)
	}),
	TypeConnectorAdd: adminCommand(applyConnectorAdd, func(tx *sql.Tx, c *ConnectorAdd) (string, error) {
		return rowJSON(tx, `SELECT * FROM connectors WHERE org = ? AND name = ?`, c.Org, c.Name)
	}),
	TypeConnectorStatus: adminCommand(applyConnectorStatus, func(tx *sql.Tx, c *ConnectorStatus) (string, error) {
		return rowJSON(tx, `SELECT * FROM connectors WHERE org = ? AND name = ?`, c.Org, c.Name)
	}),
	TypeTokenCreate: adminCommand(applyTokenCreate, nil),
	TypeCertRecord:  adminCommand(applyCertRecord, nil),
	TypeDatasetAdd: adminCommand(applyDatasetAdd, func(tx *sql.Tx, c *DatasetAdd) (string, error) {
		return rowJSON(tx, `SELECT * FROM datasets WHERE id = ?`, c.Dataset.ID)
	}),
	TypeDatasetStatus: adminCommand(applyDatasetStatus, func(tx *sql.Tx, c *DatasetStatus) (string, error) {
		return rowJSON(tx, `SELECT * FROM datasets WHERE id = ?`, c.ID)
	}),
	TypeConnectorAddress: adminCommand(applyConnectorAddress, func(tx *sql.Tx, c *ConnectorAddress) (string, error) {
		return rowJSON(tx, `SELECT * FROM connectors WHERE org = ? AND name = ?`, c.Org, c.Name)
	}),
	TypeDatasetConnectors: adminCommand(applyDatasetConnectors, func(tx *sql.Tx, c *DatasetConnectors) (string, error) {
		return rowJSON(tx, `SELECT * FROM datasets WHERE id = ?`, c.ID)
	}),
	TypeServiceAdd: adminCommand(applyServiceAdd, func(tx *sql.Tx, c *ServiceAdd) (string, error) {
		return rowJSON(tx, `SELECT * FROM services WHERE id = ?`, c.Service.ID)
	}),
	TypeNodeTokenCreate: adminCommand(applyNodeTokenCreate, nil),
	TypeNodeRemove: adminCommand(applyNodeRemove, func(tx *sql.Tx, c *NodeRemove) (string, error) {
		return rowJSON(tx, `SELECT * FROM hub_nodes WHERE id = ?`, c.Node)
	}),
	TypeKeyringAdd: adminCommand(applyKeyringAdd, nil),
	TypeOperatorAdd: adminCommand(applyOperatorAdd, func(tx *sql.Tx, c *OperatorAdd) (string, error) {
		return rowJSON(tx, `SELECT * FROM operators WHERE name = ?`, c.Name)
	}),
	TypeOperatorStatus: adminCommand(applyOperatorStatus, func(tx *sql.Tx, c *OperatorStatus) (string, error) {
		return rowJSON(tx, `SELECT * FROM operators WHERE name = ?`, c.Name)
	}),
	TypeOperatorTokenCreate: adminCommand(applyOperatorTokenCreate, nil),
	TypeApplicationSubmit: adminCommand(applyApplicationSubmit, func(tx *sql.Tx, c *ApplicationSubmit) (string, error) {
		return rowJSON(tx, `SELECT id, kind, target, org, sector, stage, status FROM applications WHERE id = ?`, c.Application.ID)
	}),
	TypeApplicationReview: adminCommand(applyApplicationReview, func(tx *sql.Tx, c *ApplicationReview) (string, error) {
		return rowJSON(tx, `SELECT id, kind, target, org, sector, stage, status FROM applications WHERE id = ?`, c.ID)
	}),
	TypeApplicationDecide: adminCommand(applyApplicationDecide, func(tx *sql.Tx, c *ApplicationDecide) (string, error) {
		return rowJSON(tx, `SELECT id, kind, target, org, sector, stage, status FROM applications WHERE id = ?`, c.ID)
	}),
	TypeCalendarLoad: adminCommand(applyCalendarLoad, nil),
	TypeSuspend: adminCommand(applySuspend, func(tx *sql.Tx, c *Suspend) (string, error) {
		if c.On == OnDataset {
			return rowJSON(tx, `SELECT id, status FROM datasets WHERE id = ?`, c.Target)
		}
		return rowJSON(tx, `SELECT id, json_extract(body, '$.status') AS status FROM services WHERE id = ?`, c.Target)
	}),
}

// wrapsKeyring says whether an entry is an operator action that adds a keyring key, which the keyring's
// decrypted copy must see (FSM.ApplyBatch).
func wrapsKeyring(t Type, data []byte) bool {
	if t&^ignorable != TypeOperatorAction || len(data) < 2 {
		return false
	}
	var a struct {
		Type Type `json:"type"`
	}
	return json.Unmarshal(data[2:], &a) == nil && a.Type == TypeKeyringAdd
}

func applyOperatorAction(tx *sql.Tx, c *OperatorAction) (Result, bool, error) {
	e := oplog.Entry{At: c.Now, Actor: c.Actor.SPIFFEID, Roles: c.Actor.Roles, Op: c.Op, Params: c.Params, Outcome: oplog.OutcomeOK}
	var (
		res     Result
		changed bool
	)
	if c.Type != 0 {
		w, ok := wrappable[c.Type]
		if !ok {
			// Validate refuses it before proposing; a log holding one is a bug, and a node must not skip it.
			return Result{}, false, fmt.Errorf("operator action carries command type %d, which is not an admin command", c.Type)
		}
		var err error
		if w.row != nil {
			if e.Before, err = w.row(tx, c.Payload); err != nil {
				return Result{}, false, err
			}
		}
		if res, changed, err = w.apply(tx, c.Payload); err != nil {
			return Result{}, false, err
		}
		if res.Code != OK {
			e.Outcome, e.Detail, e.Before = oplog.OutcomeRefused, res.Message, ""
		} else if w.row != nil {
			if e.After, err = w.row(tx, c.Payload); err != nil {
				return Result{}, false, err
			}
		}
	}
	return res, changed, appendOplog(tx, e)
}

// appendOplog chains e to the head of the operator log and stores both. The head is kept in its own row,
// so that a removed last entry leaves the head pointing past the chain's end.
func appendOplog(tx *sql.Tx, e oplog.Entry) error {
	head, err := oplogHead(tx)
	if err != nil {
		return err
	}
	// A row added behind the state machine's back may hold the next seq: step past it rather than stop the
	// node on a duplicate key. Verify reports the added row either way.
	var last int64
	if err := tx.QueryRow(`SELECT coalesce(max(seq), 0) FROM oplog`).Scan(&last); err != nil {
		return err
	}
	e.Seq, e.PrevHash, e.At = max(head.Seq, last)+1, head.Hash, e.At.UTC().Truncate(time.Millisecond)
	if e.Roles == nil {
		e.Roles = []string{}
	}
	var ok bool
	if e.Hash, ok = oplog.Hash(e); !ok {
		return fmt.Errorf("operator log head %d has a malformed hash %q", head.Seq, head.Hash)
	}
	roles, _ := json.Marshal(e.Roles)
	params, _ := json.Marshal(e.Params)
	if _, err := tx.Exec(`INSERT INTO oplog(seq, at, actor, roles, op, params, outcome, detail, before, after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, ms(e.At), e.Actor, string(roles), e.Op, string(params), e.Outcome, e.Detail, e.Before, e.After, e.PrevHash, e.Hash); err != nil {
		return fmt.Errorf("operator log: %w", err)
	}
	_, err = tx.Exec(`INSERT INTO oplog_head(id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, e.Seq, e.Hash)
	return err
}

func oplogHead(q queryRower) (oplog.Head, error) {
	h := oplog.Head{Hash: oplog.Genesis}
	err := q.QueryRow(`SELECT seq, hash FROM oplog_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return oplog.Head{Hash: oplog.Genesis}, nil
	}
	return h, err
}

// rowJSON reads one row as a JSON object of its columns; "" when there is none. The column order and
// encoding are the same on every node, so the text is too.
func rowJSON(tx *sql.Tx, query string, args ...any) (string, error) {
	rows, err := tx.Query(query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		return "", rows.Err()
	}
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return "", err
	}
	m := make(map[string]any, len(cols))
	for i, c := range cols {
		v := vals[i]
		if b, ok := v.([]byte); ok {
			if utf8.Valid(b) {
				v = string(b)
			} else {
				v = base64.StdEncoding.EncodeToString(b)
			}
		}
		m[c] = v
	}
	out, err := json.Marshal(m)
	return string(out), err
}

const oplogCols = `seq, at, actor, roles, op, params, outcome, detail, before, after, prev_hash, hash`

func scanOplog(scan func(...any) error) (oplog.Entry, error) {
	var e oplog.Entry
	var at int64
	var roles, params string
	if err := scan(&e.Seq, &at, &e.Actor, &roles, &e.Op, &params, &e.Outcome, &e.Detail, &e.Before, &e.After, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.At = fromMS(at)
	// A column an editor made unreadable stays as it is: the hash will not match, which Verify reports.
	if json.Unmarshal([]byte(roles), &e.Roles) != nil {
		e.Roles = []string{roles}
	}
	if params != "null" && json.Unmarshal([]byte(params), &e.Params) != nil {
		e.Params = map[string]string{"": params}
	}
	return e, nil
}

// OperatorLog lists the operator log's entries at or after since, in order.
func (f *FSM) OperatorLog(since time.Time) ([]oplog.Entry, error) {
	rows, err := f.db.Query(`SELECT `+oplogCols+` FROM oplog WHERE at >= ? ORDER BY seq`, ms(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []oplog.Entry{}
	for rows.Next() {
		e, err := scanOplog(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// VerifyOperatorLog walks the whole operator log and checks every entry's seq, link and hash, and the
// chain's end against the head. The head and the rows are read in one statement, so they agree even while
// entries are applied.
func (f *FSM) VerifyOperatorLog() (oplog.Report, error) {
	// The anchor (kind -1) is the last entry a retention purge removed: the chain verifies from it.
	rows, err := f.db.Query(`SELECT -1, seq, 0, '', '', '', '', '', '', '', '', '', hash FROM oplog_anchor WHERE id = 1
		UNION ALL SELECT 0, seq, 0, '', '', '', '', '', '', '', '', '', hash FROM oplog_head WHERE id = 1
		UNION ALL SELECT 1, ` + oplogCols + ` FROM oplog ORDER BY 1, 2`)
	if err != nil {
		return oplog.Report{}, err
	}
	defer rows.Close()
	v := oplog.NewVerifier(oplog.Head{Hash: oplog.Genesis})
	head := &oplog.Head{Hash: oplog.Genesis}
	for rows.Next() {
		var kind int
		e, err := scanOplog(func(dest ...any) error { return rows.Scan(append([]any{&kind}, dest...)...) })
		if err != nil {
			return oplog.Report{}, fmt.Errorf("operator log: %w", err)
		}
		if kind == -1 {
			v = oplog.NewVerifier(oplog.Head{Seq: e.Seq, Hash: e.Hash})
			continue
		}
		if kind == 0 {
			head.Seq, head.Hash = e.Seq, e.Hash
			continue
		}
		v.Add(e)
	}
	if err := rows.Err(); err != nil {
		return oplog.Report{}, err
	}
	return v.Finish(head), nil
}
