package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// An organisation's changes and its leaving the federation, and a dataset's new definition once it is in
// production, are lifecycle applications like a service's (介接作業要點 5(2)-(3), 6): filed at least
// NoticeWorkdays working days ahead, reviewed by the supervising authority first where the organisation's
// type has one, decided by the federation administrator, and put into effect on their day by the leader's
// LifecycleTick. A terminated organisation's services and datasets are terminated, its connectors
// revoked and its applicant operators' role withdrawn in the same entry, so every connector drops them
// with the next directory and no operator acts for the organisation after its day.

// OnOrg is a lifecycle application about the organisation itself.
const OnOrg = "org"

// What the applicant is told of, by e-mail (OutboxKindApplication).
const (
	EventAuthorityRefused = "authority-refused" // the supervising authority refused: the application ends
	EventRefused          = "refused"           // the federation administrator refused
	EventApproved         = "approved"          // approved and in effect
	EventScheduled        = "scheduled"         // approved, to take effect on its day
	EventEffected         = "effected"          // a scheduled one took effect on its day
	EventFailed           = "failed"            // a scheduled one could no longer take effect
	EventClosed           = "closed"            // its organisation left the federation before it was done
)

// OutboxKindApplication tells an applicant organisation's contact what became of its application. The
// outbox row's Ref is "<application id>/<event>".
const OutboxKindApplication = "application"

// MaxEmail bounds a contact address (RFC 5321's path limit).
const MaxEmail = 254

// ValidContactEmail checks an applicant's contact address: a plain address, no display name; "" is none.
func ValidContactEmail(s string) error {
	if s == "" {
		return nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || len(s) > MaxEmail || strings.ContainsAny(s, "\r\n") {
		return fmt.Errorf("contact_email: %q is not a plain e-mail address such as it@agency.gov.tw", s)
	}
	return nil
}

// validateChange checks what a change carries, as it will be, and names its target.
func (a *Application) validateChange() error {
	switch a.On {
	case OnService:
		s := a.Service.api()
		if err := s.Validate(); err != nil {
			return err
		}
		*a.Service = ServiceFrom(s)
		a.Target = s.ID
	case OnDataset:
		d := a.Dataset.api()
		if err := d.Validate(); err != nil {
			return err
		}
		*a.Dataset = DatasetFrom(d)
		a.Target = d.ID
	case OnOrg:
		if err := a.OrgInfo.Validate(); err != nil {
			return err
		}
		a.Target = a.OrgInfo.Code
	}
	return nil
}

// changeTarget is the id of what a change carries: the service's, the dataset's or the organisation's.
func (a *Application) changeTarget() string {
	switch {
	case a.Service != nil:
		return a.Service.ID
	case a.Dataset != nil:
		return a.Dataset.ID
	case a.OrgInfo != nil:
		return a.OrgInfo.Code
	}
	return a.Target
}

// changeOwner is the organisation a change says its service or dataset belongs to; "" for an
// organisation's own change.
func (a *Application) changeOwner() string {
	switch {
	case a.Kind != ApplyChange:
	case a.Service != nil:
		return a.Service.SPOrg
	case a.Dataset != nil:
		return a.Dataset.DPOrg
	}
	return ""
}

// checkChange refuses, at filing, a lifecycle application its target cannot take: one of another
// organisation's, one of an organisation that has left, or a dataset change before production (until
// then each stage's application carries the definition).
func checkChange(tx *sql.Tx, a *Application, orgStatus string) (Result, error) {
	if orgStatus == hubapi.StatusTerminated {
		return refuse(Forbidden, "organisation %q has left the federation", a.Org), nil
	}
	if owner := a.changeOwner(); owner != "" && owner != a.Org {
		return refuse(Forbidden, "%s %q belongs to %s, not %s", a.On, a.Target, a.Org, owner), nil
	}
	if a.Kind == ApplyChange && a.On == OnDataset {
		stage, _, _, err := currentStage(tx, ApplyDataset, a.Target)
		if err != nil {
			return Result{}, err
		}
		if hubapi.StageOf(stage) != hubapi.StageProduction {
			return refuse(Conflict, "dataset %q is at %s: its next stage's application carries the new definition", a.Target, hubapi.StageOf(stage)), nil
		}
	}
	return Result{}, nil
}

// setDatasetDefinition writes what a dataset is as citizens and services see it: names, description, the
// login it needs, its content type, whether its agency may answer later and whether citizens may
// download it. Its agency, connectors, stage and status stay.
func setDatasetDefinition(tx *sql.Tx, d *Dataset) error {
	_, err := tx.Exec(`UPDATE datasets SET name_zh = ?, name_en = ?, description = ?, min_aal = ?, methods = ?, content_type = ?, async = ?, download = ? WHERE id = ?`,
		d.NameZh, d.NameEn, d.Description, d.MinAAL, strings.Join(d.Methods, ","), d.ContentType, d.Async, d.Download, d.ID)
	return err
}

// orgEffect makes an organisation's approved change or termination. A termination ends everything the
// organisation has in the federation at once: its services and datasets are terminated (the directory
// withdraws them), its connectors revoked (peers refuse them, the hub renews nothing), its applicants'
// role withdrawn and its open applications closed.
func orgEffect(tx *sql.Tx, a *Application, now time.Time) (Result, bool, error) {
	if a.Kind == ApplyChange {
		o := a.OrgInfo
		_, err := tx.Exec(`UPDATE orgs SET name_zh = ?, name_en = ?, type = ? WHERE code = ?`, o.NameZh, o.NameEn, o.Type, a.Target)
		if err == nil && a.ContactEmail != "" {
			_, err = tx.Exec(`UPDATE orgs SET contact_email = ? WHERE code = ?`, a.ContactEmail, a.Target)
		}
		return Result{}, true, err
	}
	if _, err := tx.Exec(`UPDATE orgs SET status = ? WHERE code = ?`, hubapi.StatusTerminated, a.Target); err != nil {
		return Result{}, false, err
	}
	services, err := queryIDs(tx, `SELECT id FROM services WHERE sp_org = ? ORDER BY id`, a.Target)
	if err != nil {
		return Result{}, false, err
	}
	for _, id := range services {
		if _, _, err := setServiceStatus(tx, &Application{Kind: ApplyTerminate, On: OnService, Target: id}, hubapi.StatusTerminated); err != nil {
			return Result{}, false, err
		}
	}
	if _, err := tx.Exec(`UPDATE datasets SET status = ? WHERE dp_org = ?`, hubapi.StatusTerminated, a.Target); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`UPDATE connectors SET status = ?, updated_at = ? WHERE org = ? AND status != ?`,
		hubapi.StatusRevoked, ms(now), a.Target, hubapi.StatusRevoked); err != nil {
		return Result{}, false, err
	}
	if err := withdrawApplicants(tx, a, now); err != nil {
		return Result{}, false, err
	}
	return Result{}, true, closeOpenApplications(tx, a, now)
}

// withdrawApplicants takes the role applicant:<org> from the operators of a leaving organisation, so that
// none of them acts for it any more: an operator with no other role is disabled (its roles kept, to show
// whom it acted for; its join tokens dropped), one with other roles keeps those. Each change is in the
// operator log as the hub's, with the row before and after.
func withdrawApplicants(tx *sql.Tx, leaving *Application, now time.Time) error {
	role := RoleApplicant + ":" + leaving.Target
	// The roles column is comma-separated; the LIKE narrows, the exact match below decides.
	names, err := queryIDs(tx, `SELECT name FROM operators WHERE ','||roles||',' LIKE ? ORDER BY name`, "%,"+role+",%")
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("organisation %s left the federation on %s (application %s)", leaving.Target, leaving.EffectiveOn, leaving.ID)
	for _, name := range names {
		op, err := operator(tx, name)
		if err != nil {
			return err
		}
		if !slices.Contains(op.Roles, role) {
			continue
		}
		before, err := rowJSON(tx, `SELECT * FROM operators WHERE name = ?`, name)
		if err != nil {
			return err
		}
		e := oplog.Entry{At: now, Actor: "hub", Roles: []string{}, Outcome: oplog.OutcomeOK, Detail: reason, Before: before}
		if rest := slices.DeleteFunc(slices.Clone(op.Roles), func(r string) bool { return r == role }); len(rest) > 0 {
			_, err = tx.Exec(`UPDATE operators SET roles = ?, acts_for = ?, updated_at = ? WHERE name = ?`, joinRoles(rest), ActsFor(rest), ms(now), name)
			e.Op, e.Params = "operator roles", map[string]string{"name": name, "dropped": role, "roles": joinRoles(rest)}
		} else if op.Status != OperatorDisabled {
			if _, err = tx.Exec(`UPDATE operators SET status = ?, updated_at = ? WHERE name = ?`, OperatorDisabled, ms(now), name); err == nil {
				_, err = tx.Exec(`DELETE FROM operator_tokens WHERE operator = ?`, name)
			}
			e.Op, e.Params = "operator status", map[string]string{"name": name, "status": OperatorDisabled}
		} else {
			continue
		}
		if err != nil {
			return err
		}
		if e.After, err = rowJSON(tx, `SELECT * FROM operators WHERE name = ?`, name); err != nil {
			return err
		}
		if err := appendOplog(tx, e); err != nil {
			return err
		}
	}
	return nil
}

// closeOpenApplications refuses the applications a leaving organisation still had open, each with the
// hub's reason, in the operator log, and its applicant told.
func closeOpenApplications(tx *sql.Tx, leaving *Application, now time.Time) error {
	ids, err := queryIDs(tx, `SELECT id FROM applications WHERE org = ? AND id != ? AND status IN (?, ?, ?) ORDER BY id`,
		leaving.Target, leaving.ID, AppAuthorityReview, AppAdminReview, AppScheduled)
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("organisation %s left the federation on %s (application %s)", leaving.Target, leaving.EffectiveOn, leaving.ID)
	for _, id := range ids {
		a, err := application(tx, id)
		if err != nil {
			return err
		}
		a.Status, a.UpdatedAt = AppRefused, now.UTC()
		a.Decisions = append(a.Decisions, Decision{Step: StepSystem, Reviewer: "hub", Roles: []string{}, Reason: reason, At: now.UTC()})
		if err := putApplication(tx, a, false); err != nil {
			return err
		}
		e := oplog.Entry{At: now, Actor: "hub", Roles: []string{}, Op: "application close", Outcome: oplog.OutcomeOK, Detail: reason,
			Params: map[string]string{"id": a.ID, "kind": a.Kind, "target": a.Target}}
		if err := appendOplog(tx, e); err != nil {
			return err
		}
		if err := tellApplicant(tx, a, EventClosed, now); err != nil {
			return err
		}
	}
	return nil
}

// queryIDs reads the one text column a query selects, in its order.
func queryIDs(tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// contactOf is where an application's news goes: the address on the application, else its
// organisation's; "" when neither has one.
func contactOf(q queryRower, a *Application) (string, error) {
	if a.ContactEmail != "" {
		return a.ContactEmail, nil
	}
	var addr string
	err := q.QueryRow(`SELECT contact_email FROM orgs WHERE code = ?`, a.Org).Scan(&addr)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return addr, err
}

// tellApplicant queues an e-mail to the applicant's contact saying what became of the application, in
// the entry that decided it; nothing when the applicant has given no address.
func tellApplicant(tx *sql.Tx, a *Application, event string, at time.Time) error {
	addr, err := contactOf(tx, a)
	if err != nil || addr == "" {
		return err
	}
	ref := a.ID + "/" + event
	_, err = tx.Exec(`INSERT OR IGNORE INTO outbox(id, subject_hash, kind, channel, ref, state, attempts, created_at, next_at, sent_at, last_error)
		VALUES (?, '', ?, 'email', ?, ?, 0, ?, ?, 0, '')`, OutboxKindApplication+":"+ref+":email", OutboxKindApplication, ref, OutboxPending, ms(at), ms(at))
	return err
}

// ApplicantNotice is what an applicant's e-mail says, read when it is sent.
type ApplicantNotice struct {
	To          string
	Event       string
	Application Application
	// OrgNameZh and OrgNameEn name the applicant organisation (or the code, before it has joined).
	OrgNameZh, OrgNameEn string
}

// ApplicantNoticeOf reads what an applicant's notice (an outbox row of OutboxKindApplication) is about;
// nil when the application or the address is gone.
func (f *FSM) ApplicantNoticeOf(ref string) (*ApplicantNotice, error) {
	id, event, ok := strings.Cut(ref, "/")
	if !ok {
		return nil, fmt.Errorf("applicant notice %q: not <application>/<event>", ref)
	}
	a, err := application(f.db, id)
	if err != nil || a == nil {
		return nil, err
	}
	to, err := contactOf(f.db, a)
	if err != nil || to == "" {
		return nil, err
	}
	n := &ApplicantNotice{To: to, Event: event, Application: *a, OrgNameZh: a.Org, OrgNameEn: a.Org}
	if o, err := f.Org(a.Org); err == nil && o != nil {
		n.OrgNameZh, n.OrgNameEn = o.NameZh, o.NameEn
	} else if a.OrgInfo != nil {
		n.OrgNameZh, n.OrgNameEn = a.OrgInfo.NameZh, a.OrgInfo.NameEn
	}
	return n, nil
}

// OrgContact is an organisation's contact address for its applications; "" if it gave none.
func (f *FSM) OrgContact(code string) (string, error) {
	var addr string
	err := f.db.QueryRow(`SELECT contact_email FROM orgs WHERE code = ?`, code).Scan(&addr)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return addr, err
}

// DatasetChange is a scheduled change of a dataset's definition: the dataset now and as it will be.
type DatasetChange struct {
	Now, Next hubapi.Dataset
}

// Differs lists the parts of a dataset's definition a change alters: name, description, login, content
// type, async, download.
func (c DatasetChange) Differs() []string {
	var out []string
	n, x := c.Now, c.Next
	if n.NameZh != x.NameZh || n.NameEn != x.NameEn {
		out = append(out, "name")
	}
	if n.Description != x.Description {
		out = append(out, "description")
	}
	if n.MinAAL != x.MinAAL || !slices.Equal(n.Methods, x.Methods) {
		out = append(out, "login")
	}
	if n.ContentType != x.ContentType {
		out = append(out, "content_type")
	}
	if n.Async != x.Async {
		out = append(out, "async")
	}
	if n.Download != x.Download {
		out = append(out, "download")
	}
	return out
}
