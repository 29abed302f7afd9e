package fsm

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
	"github.com/mydatafed/mydata/pkg/fedid"
)

// Operator roles. A role with a scope is written role:scope.
const (
	// RoleFederationAdmin runs the platform (the ministry): every admin call.
	RoleFederationAdmin = "federation-admin"
	// RoleReviewer is a supervising authority for a sector: reviewer:education, reviewer:financial, reviewer:soe.
	RoleReviewer = "reviewer"
	// RoleApplicant acts for its own organisation: applicant:<org>.
	RoleApplicant = "applicant"
	// RoleAuditor reads, the operator log included, and changes nothing.
	RoleAuditor = "auditor"
)

// Sectors a reviewer may supervise: universities (Ministry of Education), financial institutions
// (Financial Supervisory Commission) and state-owned enterprises (their ministry).
var Sectors = []string{"education", "financial", "soe"}

// Operator statuses.
const (
	OperatorActive   = "active"
	OperatorDisabled = "disabled"
)

// BootstrapOperator is the name of the credential every hub node issues itself for its own CLI
// (data_dir/operator). It holds the federation-admin role without a record: whoever can read it can read
// the root CA key beside it. No operator record may take the name.
const BootstrapOperator = "admin"

// SplitRole splits role:scope.
func SplitRole(r string) (role, scope string) {
	role, scope, _ = strings.Cut(r, ":")
	return role, scope
}

// ValidRole checks one role's form; an applicant's organisation is checked against the state on apply.
func ValidRole(r string) error {
	role, scope := SplitRole(r)
	switch role {
	case RoleFederationAdmin, RoleAuditor:
		if scope != "" {
			return fmt.Errorf("role %q takes no scope", role)
		}
	case RoleReviewer:
		if !slices.Contains(Sectors, scope) {
			return fmt.Errorf("role %q: want reviewer:<sector>, a sector of %s", r, strings.Join(Sectors, ", "))
		}
	case RoleApplicant:
		if err := fedid.ValidName(scope); err != nil {
			return fmt.Errorf("role %q: want applicant:<organisation code>: %v", r, err)
		}
	default:
		return fmt.Errorf("role %q: want federation-admin, auditor, reviewer:<sector> or applicant:<org>", r)
	}
	return nil
}

// ActsFor is what an operator with these roles acts for: the federation, its sectors and organisations.
func ActsFor(roles []string) string {
	var out []string
	for _, r := range roles {
		role, scope := SplitRole(r)
		switch {
		case role == RoleFederationAdmin:
			out = append(out, "federation")
		case scope != "":
			out = append(out, scope)
		}
	}
	return strings.Join(out, ",")
}

// Operator is an operator record.
type Operator struct {
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	ActsFor   string    `json:"acts_for"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	SPIFFEID  string    `json:"spiffe_id,omitempty"`
}

// OperatorAdd records a new operator; it enrolls later with a join token.
type OperatorAdd struct {
	Name  string    `json:"name"`
	Roles []string  `json:"roles"`
	Now   time.Time `json:"now"`
}

// OperatorStatus disables an operator (its SVID is refused at once, its tokens are dropped) or enables it.
type OperatorStatus struct {
	Name   string    `json:"name"`
	Status string    `json:"status"`
	Now    time.Time `json:"now"`
}

// OperatorTokenCreate records an operator's join token by its hash. It also drops expired operator tokens,
// so they need no purge of their own.
type OperatorTokenCreate struct {
	Hash      string    `json:"hash"`
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
	Now       time.Time `json:"now"`
}

// OperatorEnroll spends an operator's join token and records the SVID issued with it, in one entry like a
// connector's Enroll; the operator log records the enrollment in the same entry.
type OperatorEnroll struct {
	TokenHash string     `json:"token_hash"`
	Name      string     `json:"name"`
	Cert      CertRecord `json:"cert"`
}

// OperatorRenew records an SVID issued to an operator for its own ID, if it is still active on apply.
type OperatorRenew struct {
	Name string     `json:"name"`
	Cert CertRecord `json:"cert"`
}

// Actor is who does an operator action: the SPIFFE ID and the roles it was authorised with.
type Actor struct {
	SPIFFEID string   `json:"spiffe_id"`
	Roles    []string `json:"roles"`
}

// OperatorAction is an operator's action: an admin command (Type and Payload) applied together with the
// operator log entry that records it, in one raft entry and so one transaction — the change cannot land
// without its record. With Type 0 it is the record alone, for an action that changes no state (a backup,
// an export of the log).
type OperatorAction struct {
	Actor   Actor             `json:"actor"`
	Op      string            `json:"op"`
	Params  map[string]string `json:"params,omitempty"`
	Type    Type              `json:"type,omitempty"`
	Payload json.RawMessage   `json:"payload,omitempty"`
	Now     time.Time         `json:"now"`
}

// Act wraps an admin command (nil for none) as an operator's action. params must hold no secret.
func Act(actor Actor, op string, params map[string]string, cmd Command, now time.Time) (*OperatorAction, error) {
	a := &OperatorAction{Actor: actor, Op: op, Params: params, Now: now}
	if cmd != nil {
		t, ok := typeOf()[reflect.TypeOf(cmd)]
		if !ok {
			return nil, fmt.Errorf("fsm: %T is not in the command registry", cmd)
		}
		if err := cmd.Validate(); err != nil {
			return nil, &Error{Code: Invalid, Message: err.Error()}
		}
		p, err := json.Marshal(cmd)
		if err != nil {
			return nil, err
		}
		a.Type, a.Payload = t, p
	}
	return a, nil
}

func (c *OperatorAdd) Validate() error {
	if err := fedid.ValidName(c.Name); err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if c.Name == BootstrapOperator {
		return fmt.Errorf("name: %q is the bootstrap credential of every hub node; choose another", c.Name)
	}
	if len(c.Roles) == 0 {
		return errors.New("roles: at least one")
	}
	for _, r := range c.Roles {
		if err := ValidRole(r); err != nil {
			return fmt.Errorf("roles: %v", err)
		}
	}
	if len(c.Roles) != len(slices.Compact(slices.Sorted(slices.Values(c.Roles)))) {
		return errors.New("roles: a role is given twice")
	}
	return nil
}

func (c *OperatorStatus) Validate() error {
	if c.Status != OperatorActive && c.Status != OperatorDisabled {
		return fmt.Errorf("status: %q is not active or disabled", c.Status)
	}
	return fedid.ValidName(c.Name)
}

func (c *OperatorTokenCreate) Validate() error {
	if c.Hash == "" || c.Name == "" {
		return errors.New("operator token: hash and name are required")
	}
	if !c.ExpiresAt.After(c.Now) {
		return errors.New("ttl: the token would expire at once")
	}
	return nil
}

func (c *OperatorEnroll) Validate() error {
	if c.TokenHash == "" || c.Name == "" {
		return errors.New("operator enroll: token hash and name are required")
	}
	return c.Cert.Validate()
}

func (c *OperatorRenew) Validate() error {
	if c.Name == "" {
		return errors.New("operator renew: name required")
	}
	return c.Cert.Validate()
}

func (c *OperatorAction) Validate() error {
	if c.Actor.SPIFFEID == "" || len(c.Actor.Roles) == 0 || c.Op == "" {
		return errors.New("operator action: actor, roles and op are required")
	}
	if c.Type == 0 {
		if len(c.Payload) != 0 {
			return errors.New("operator action: a payload without a type")
		}
		return nil
	}
	w, ok := wrappable[c.Type]
	if !ok {
		return fmt.Errorf("operator action: command type %d is not an admin command", c.Type)
	}
	return w.validate(c.Payload)
}

func applyOperatorAdd(tx *sql.Tx, c *OperatorAdd) (Result, bool, error) {
	if op, err := operator(tx, c.Name); err != nil || op != nil {
		if err == nil {
			return refuse(Conflict, "operator %q already exists", c.Name), false, nil
		}
		return Result{}, false, err
	}
	for _, r := range c.Roles {
		if role, org := SplitRole(r); role == RoleApplicant {
			var n int
			if err := tx.QueryRow(`SELECT count(*) FROM orgs WHERE code = ?`, org).Scan(&n); err != nil {
				return Result{}, false, err
			}
			if n == 0 {
				return refuse(NotFound, "role %s: organisation %q does not exist", r, org), false, nil
			}
		}
	}
	_, err := tx.Exec(`INSERT INTO operators(name, roles, acts_for, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Name, joinRoles(c.Roles), ActsFor(c.Roles), OperatorActive, ms(c.Now), ms(c.Now))
	return Result{}, false, err
}

func applyOperatorStatus(tx *sql.Tx, c *OperatorStatus) (Result, bool, error) {
	op, err := operator(tx, c.Name)
	switch {
	case err != nil:
		return Result{}, false, err
	case op == nil:
		return refuse(NotFound, "operator %q does not exist", c.Name), false, nil
	case op.Status == c.Status:
		return refuse(Conflict, "operator %q is already %s", c.Name, c.Status), false, nil
	}
	if _, err := tx.Exec(`UPDATE operators SET status = ?, updated_at = ? WHERE name = ?`, c.Status, ms(c.Now), c.Name); err != nil {
		return Result{}, false, err
	}
	if c.Status == OperatorDisabled {
		_, err = tx.Exec(`DELETE FROM operator_tokens WHERE operator = ?`, c.Name)
	}
	return Result{}, false, err
}

func applyOperatorTokenCreate(tx *sql.Tx, c *OperatorTokenCreate) (Result, bool, error) {
	op, err := operator(tx, c.Name)
	switch {
	case err != nil:
		return Result{}, false, err
	case op == nil:
		return refuse(NotFound, "operator %q does not exist", c.Name), false, nil
	case op.Status != OperatorActive:
		return refuse(Forbidden, "operator %q is %s", c.Name, op.Status), false, nil
	}
	if _, err := tx.Exec(`DELETE FROM operator_tokens WHERE expires_at <= ?`, ms(c.Now)); err != nil {
		return Result{}, false, err
	}
	_, err = tx.Exec(`INSERT INTO operator_tokens(hash, operator, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		c.Hash, c.Name, ms(c.Now), ms(c.ExpiresAt))
	return Result{}, false, err
}

func applyOperatorEnroll(tx *sql.Tx, c *OperatorEnroll) (Result, bool, error) {
	tok, err := operatorToken(tx, c.TokenHash)
	if err != nil {
		return Result{}, false, err
	}
	if r := CheckOperatorToken(tok, c.Name, c.Cert.Now); r.Code != OK {
		return r, false, nil
	}
	op, err := operator(tx, c.Name)
	if err != nil {
		return Result{}, false, err
	}
	if op == nil || op.Status != OperatorActive {
		return refuse(Forbidden, "operator %q is not active", c.Name), false, nil
	}
	if _, err := tx.Exec(`DELETE FROM operator_tokens WHERE hash = ?`, c.TokenHash); err != nil {
		return Result{}, false, err
	}
	if res, _, err := applyCertRecord(tx, &c.Cert); err != nil || res.Code != OK {
		return res, false, err
	}
	err = appendOplog(tx, oplog.Entry{At: c.Cert.Now, Actor: c.Cert.SPIFFEID, Roles: op.Roles, Op: "operator enroll",
		Params: map[string]string{"name": c.Name, "serial": c.Cert.Serial, "not_after": c.Cert.NotAfter.UTC().Format(time.RFC3339)}, Outcome: oplog.OutcomeOK})
	return Result{}, false, err
}

func applyOperatorRenew(tx *sql.Tx, c *OperatorRenew) (Result, bool, error) {
	op, err := operator(tx, c.Name)
	if err != nil {
		return Result{}, false, err
	}
	if op == nil || op.Status != OperatorActive {
		return refuse(Forbidden, "operator %q is not active and cannot renew its SVID", c.Name), false, nil
	}
	return applyCertRecord(tx, &c.Cert)
}

// OperatorToken is a stored operator join token.
type OperatorToken struct {
	Hash      string
	Name      string
	ExpiresAt time.Time
}

// CheckOperatorToken says why a looked-up token (nil if absent) cannot enroll operator name at now.
func CheckOperatorToken(t *OperatorToken, name string, now time.Time) Result {
	switch {
	case t == nil:
		return refuse(Forbidden, "join token is unknown or already used")
	case !now.Before(t.ExpiresAt):
		return refuse(Forbidden, "join token expired at %s", t.ExpiresAt.Format(time.RFC3339))
	case t.Name != name:
		return refuse(Forbidden, "join token was issued for operator %q, not %q", t.Name, name)
	}
	return Result{}
}

func operatorToken(q queryRower, hash string) (*OperatorToken, error) {
	t := OperatorToken{Hash: hash}
	var exp int64
	err := q.QueryRow(`SELECT operator, expires_at FROM operator_tokens WHERE hash = ?`, hash).Scan(&t.Name, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t.ExpiresAt = fromMS(exp)
	return &t, nil
}

// OperatorToken looks up an operator join token by hash; nil if there is none.
func (f *FSM) OperatorToken(hash string) (*OperatorToken, error) { return operatorToken(f.db, hash) }

const operatorCols = `name, roles, acts_for, status, created_at, updated_at`

func scanOperator(scan func(...any) error) (*Operator, error) {
	var o Operator
	var roles string
	var created, updated int64
	if err := scan(&o.Name, &roles, &o.ActsFor, &o.Status, &created, &updated); err != nil {
		return nil, err
	}
	o.Roles = splitRoles(roles)
	o.CreatedAt, o.UpdatedAt = fromMS(created), fromMS(updated)
	return &o, nil
}

func operator(q queryRower, name string) (*Operator, error) {
	o, err := scanOperator(q.QueryRow(`SELECT `+operatorCols+` FROM operators WHERE name = ?`, name).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return o, err
}

// Operator finds an operator record; nil if there is none. Every admin call reads it, so it is cached.
func (f *FSM) Operator(name string) (*Operator, error) {
	return cached(&f.lookups, "operator\x00"+name, func() (*Operator, error) { return operator(f.db, name) })
}

// Operators lists the operator records.
func (f *FSM) Operators() ([]Operator, error) {
	rows, err := f.db.Query(`SELECT ` + operatorCols + ` FROM operators ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Operator{}
	for rows.Next() {
		o, err := scanOperator(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, *o)
	}
	return out, rows.Err()
}
