package fsm

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Applications are how an organisation, and then each of its services and datasets, come into the
// federation (介接作業要點 points 4 and 5): the applicant files one, the supervising authority of its sector
// reviews it first when its type has one (universities: Ministry of Education; state-owned enterprises:
// their ministry; financial institutions: the FSC), and a refusal there goes straight back to the
// applicant; the federation administrator decides last, and an approval creates or changes the same rows
// `org add`, `service add` and `dataset add` write.

// Kinds of application.
const (
	ApplyOrg     = "org"
	ApplyService = "service"
	ApplyDataset = "dataset"
)

// Application states.
const (
	// AppAuthorityReview waits for the supervising authority's reviewer of the sector.
	AppAuthorityReview = "authority-review"
	// AppAdminReview waits for the federation administrator.
	AppAdminReview = "admin-review"
	AppApproved    = "approved"
	AppRefused     = "refused"
)

// Steps of a decision.
const (
	StepAuthority = "authority"
	StepAdmin     = "admin"
)

// MaxTestSubjects bounds the test subjects a pilot application lists.
const MaxTestSubjects = 1000

// SectorOf is the supervising authority's sector for an organisation type: "" when the federation
// administrator alone decides (agencies and local governments, points 4(1)-(3)).
func SectorOf(orgType string) string {
	switch orgType {
	case "university":
		return "education"
	case "state-owned-enterprise":
		return "soe"
	case "financial-institution":
		return "financial"
	}
	return ""
}

// Decision is one review of an application, by whom and why.
type Decision struct {
	Step     string    `json:"step"`
	Reviewer string    `json:"reviewer"`
	Roles    []string  `json:"roles"`
	Approve  bool      `json:"approve"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Application is an application and every decision on it.
type Application struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Target is what it is for: the organisation's code, the service's or the dataset's id.
	Target string `json:"target"`
	// Org is the applying organisation; Sector the supervising authority's, "" if none.
	Org    string `json:"org"`
	Sector string `json:"sector,omitempty"`
	// Authority names the supervising authority as the applicant gives it (a state-owned enterprise's
	// ministry, say).
	Authority string `json:"authority,omitempty"`
	// Stage is the stage a service or dataset applies for.
	Stage string `json:"stage,omitempty"`
	// OrgInfo, Service and Dataset are what is applied for, by kind: the review items (purpose, terms,
	// datasets and the legal basis to ask for more than five) are the service's fields.
	OrgInfo *OrgAdd  `json:"org_info,omitempty"`
	Service *Service `json:"service,omitempty"`
	Dataset *Dataset `json:"dataset,omitempty"`
	// On says what a change, suspension, resumption or termination is about: service or dataset.
	On string `json:"on,omitempty"`
	// EffectiveOn is the day (YYYY-MM-DD, in Taipei) a lifecycle application takes effect; EffectedAt
	// when it did.
	EffectiveOn string    `json:"effective_on,omitempty"`
	EffectedAt  time.Time `json:"effected_at,omitzero"`
	// ContactEmail is where the hub tells the applicant what became of the application; without it, the
	// organisation's contact (set by its joining application or a change). An organisation's joining or
	// change application makes it the organisation's contact.
	ContactEmail string `json:"contact_email,omitempty"`
	// TestSubjects are a pilot's citizens, as keyed lookup hashes; never the national IDs.
	TestSubjects []string   `json:"test_subjects,omitempty"`
	Note         string     `json:"note,omitempty"`
	Status       string     `json:"status"`
	SubmittedBy  string     `json:"submitted_by"`
	SubmittedAt  time.Time  `json:"submitted_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	Decisions    []Decision `json:"decisions"`
}

// ApplicationSubmit files an application. The actor is in the payload so that apply checks, against the
// state it applies to, that an applicant files only for its own organisation.
type ApplicationSubmit struct {
	Application Application `json:"application"`
	Actor       Actor       `json:"actor"`
	Now         time.Time   `json:"now"`
}

// ApplicationReview is the supervising authority's review of an application of its sector.
type ApplicationReview struct {
	ID      string    `json:"id"`
	Actor   Actor     `json:"actor"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason"`
	Now     time.Time `json:"now"`
}

// ApplicationDecide is the federation administrator's decision; an approval applies what was applied for
// in the same entry, and is refused, leaving the application waiting, if that cannot be done.
type ApplicationDecide struct {
	ID      string    `json:"id"`
	Actor   Actor     `json:"actor"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason"`
	Now     time.Time `json:"now"`
}

var applicationID = regexp.MustCompile(`^app-[a-z0-9]{1,32}$`)

// ValidApplicationID checks an application id's form.
func ValidApplicationID(id string) error {
	if !applicationID.MatchString(id) {
		return fmt.Errorf("application id %q is not app-<1 to 32 of a-z, 0-9>", id)
	}
	return nil
}

func (c *ApplicationSubmit) Validate() error {
	a := &c.Application
	if err := ValidApplicationID(a.ID); err != nil {
		return err
	}
	if c.Actor.SPIFFEID == "" || len(c.Actor.Roles) == 0 {
		return errors.New("application: the actor and its roles are required")
	}
	if len(a.Authority) > 200 || len(a.Note) > 2000 {
		return errors.New("application: authority at most 200 bytes, note at most 2000")
	}
	if err := ValidContactEmail(a.ContactEmail); err != nil {
		return err
	}
	if isLifecycle(a.Kind) {
		return a.validateLifecycle()
	}
	given := 0
	for _, p := range []bool{a.OrgInfo != nil, a.Service != nil, a.Dataset != nil} {
		if p {
			given++
		}
	}
	if given != 1 {
		return errors.New("application: give exactly one of an organisation, a service or a dataset")
	}
	switch a.Kind {
	case ApplyOrg:
		if a.OrgInfo == nil {
			return errors.New("application: an org application carries the organisation")
		}
		if a.Stage != "" || len(a.TestSubjects) > 0 {
			return errors.New("application: an organisation has no stage and no test subjects")
		}
		if err := a.OrgInfo.Validate(); err != nil {
			return err
		}
		if a.OrgInfo.Type == "state-owned-enterprise" && strings.TrimSpace(a.Authority) == "" {
			return errors.New("authority: a state-owned enterprise names its supervising ministry")
		}
		a.Target = a.OrgInfo.Code
	case ApplyService:
		if a.Service == nil {
			return errors.New("application: a service application carries the service")
		}
		s := a.Service.api()
		if err := s.Validate(); err != nil {
			return err
		}
		*a.Service = ServiceFrom(s)
		a.Target = s.ID
	case ApplyDataset:
		if a.Dataset == nil {
			return errors.New("application: a dataset application carries the dataset")
		}
		d := a.Dataset.api()
		if err := d.Validate(); err != nil {
			return err
		}
		*a.Dataset = DatasetFrom(d)
		a.Target = d.ID
	default:
		return fmt.Errorf("kind: %q is not org, service or dataset", a.Kind)
	}
	if a.Kind != ApplyOrg {
		if !slices.Contains(hubapi.Stages, a.Stage) {
			return fmt.Errorf("stage: %q is not one of %s", a.Stage, strings.Join(hubapi.Stages, ", "))
		}
		switch {
		case a.Stage == hubapi.StagePilot && len(a.TestSubjects) == 0:
			return errors.New("test_subjects: a pilot lists the citizens it may serve")
		case a.Stage != hubapi.StagePilot && len(a.TestSubjects) > 0:
			return errors.New("test_subjects: only a pilot lists test subjects")
		case len(a.TestSubjects) > MaxTestSubjects:
			return fmt.Errorf("test_subjects: at most %d", MaxTestSubjects)
		}
		for _, h := range a.TestSubjects {
			if h == "" || len(h) > 128 {
				return errors.New("test_subjects: a keyed hash each")
			}
		}
	}
	return nil
}

func validDecision(id string, actor Actor, reason string) error {
	if err := ValidApplicationID(id); err != nil {
		return err
	}
	if actor.SPIFFEID == "" || len(actor.Roles) == 0 {
		return errors.New("application: the actor and its roles are required")
	}
	if strings.TrimSpace(reason) == "" || len(reason) > 2000 {
		return errors.New("reason: required, at most 2000 bytes")
	}
	return nil
}

func (c *ApplicationReview) Validate() error { return validDecision(c.ID, c.Actor, c.Reason) }
func (c *ApplicationDecide) Validate() error { return validDecision(c.ID, c.Actor, c.Reason) }

// needsRole refuses an operator that holds none of roles for what it tried, naming the role it needs.
func needsRole(actor Actor, what string, roles ...string) (Result, bool) {
	for _, r := range roles {
		if Holds(actor.Roles, r) {
			return Result{}, false
		}
	}
	return refuse(Forbidden, "operator %s (roles %s) may not %s: it needs the role %s",
		actor.SPIFFEID, joinRoles(actor.Roles), what, strings.Join(roles, " or ")), true
}

// waiting reads the application a review or decision is about, refused unless it is in status.
func waiting(tx *sql.Tx, id, status string) (*Application, Result, error) {
	a, err := application(tx, id)
	switch {
	case err != nil:
		return nil, Result{}, err
	case a == nil:
		return nil, refuse(NotFound, "application %s does not exist", id), nil
	case a.Status == status:
		return a, Result{}, nil
	case status == AppAdminReview && a.Status == AppAuthorityReview:
		return nil, refuse(Conflict, "application %s waits for the review of %s:%s first", id, RoleReviewer, a.Sector), nil
	case status == AppAuthorityReview:
		return nil, refuse(Conflict, "application %s is %s: it does not wait for a supervising authority's review", id, a.Status), nil
	}
	return nil, refuse(Conflict, "application %s is %s already", id, a.Status), nil
}

// decided records a decision on an application, saves it and tells the applicant of event ("" for
// nothing to tell).
func decided(tx *sql.Tx, a *Application, step string, actor Actor, approve bool, reason string, now time.Time, event string) error {
	a.Decisions = append(a.Decisions, Decision{Step: step, Reviewer: actor.SPIFFEID, Roles: actor.Roles, Approve: approve, Reason: reason, At: now.UTC()})
	a.UpdatedAt = now.UTC()
	if err := putApplication(tx, a, false); err != nil || event == "" {
		return err
	}
	return tellApplicant(tx, a, event, now)
}

// Holds says whether roles hold role (role:scope, or a bare role that takes no scope).
func Holds(roles []string, role string) bool { return slices.Contains(roles, role) }

// orgOf reads an organisation's type and status; ok false if there is none.
func orgOf(tx *sql.Tx, code string) (typ, status string, ok bool, err error) {
	err = tx.QueryRow(`SELECT type, status FROM orgs WHERE code = ?`, code).Scan(&typ, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	return typ, status, err == nil, err
}

// currentStage reads the stage of the service or dataset an application is for; exists false if there
// is none yet.
func currentStage(tx *sql.Tx, kind, id string) (stage, owner string, exists bool, err error) {
	switch kind {
	case ApplyService:
		var body string
		err = tx.QueryRow(`SELECT body, sp_org FROM services WHERE id = ?`, id).Scan(&body, &owner)
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", false, nil
		}
		if err != nil {
			return "", "", false, err
		}
		var s hubapi.Service
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return "", "", false, err
		}
		return s.Stage, owner, true, nil
	case ApplyDataset:
		err = tx.QueryRow(`SELECT stage, dp_org FROM datasets WHERE id = ?`, id).Scan(&stage, &owner)
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", false, nil
		}
		return stage, owner, err == nil, err
	}
	return "", "", false, fmt.Errorf("no stage for kind %q", kind)
}

func applyApplicationSubmit(tx *sql.Tx, c *ApplicationSubmit) (Result, bool, error) {
	a := c.Application
	lifecycleStatus := ""
	switch a.Kind {
	case ApplyOrg:
		a.Org, a.Target = a.OrgInfo.Code, a.OrgInfo.Code
	case ApplyService:
		a.Org, a.Target = a.Service.SPOrg, a.Service.ID
	case ApplyDataset:
		a.Org, a.Target = a.Dataset.DPOrg, a.Dataset.ID
	default:
		if a.Kind == ApplyChange {
			a.Target = a.changeTarget()
		}
		owner, status, exists, err := lifecycleTarget(tx, a.On, a.Target)
		if err != nil {
			return Result{}, false, err
		}
		if !exists {
			return refuse(NotFound, "%s %q does not exist", a.On, a.Target), false, nil
		}
		a.Org, lifecycleStatus = owner, status
	}
	if res, no := needsRole(c.Actor, "apply for "+a.Org, RoleApplicant+":"+a.Org, RoleFederationAdmin); no {
		return res, false, nil
	}
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM applications WHERE id = ?`, a.ID).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "application %s already exists", a.ID), false, nil
	}
	if err := tx.QueryRow(`SELECT count(*) FROM applications WHERE kind = ? AND target = ? AND status IN (?, ?)`,
		a.Kind, a.Target, AppAuthorityReview, AppAdminReview).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "%s %q already has an application under review", a.Kind, a.Target), false, nil
	}
	typ, status, exists, err := orgOf(tx, a.Org)
	if err != nil {
		return Result{}, false, err
	}
	if isLifecycle(a.Kind) {
		if !exists {
			return refuse(NotFound, "organisation %q does not exist", a.Org), false, nil
		}
		if why := lifecycleAllowed(a.Kind, a.On, a.Target, lifecycleStatus); why != "" {
			return refuse(Conflict, "%s", why), false, nil
		}
		if res, err := checkChange(tx, &a, status); err != nil || res.Code != OK {
			return res, false, err
		}
		if res, err := checkNotice(tx, &a, c.Now); err != nil || res.Code != OK {
			return res, false, err
		}
	} else if a.Kind == ApplyOrg {
		if exists {
			return refuse(Conflict, "organisation %q already exists", a.Org), false, nil
		}
		typ = a.OrgInfo.Type
	} else {
		if !exists {
			return refuse(NotFound, "organisation %q does not exist: it applies to join first", a.Org), false, nil
		}
		if status != hubapi.StatusActive {
			return refuse(Forbidden, "organisation %q is %s", a.Org, status), false, nil
		}
		stage, owner, exists, err := currentStage(tx, a.Kind, a.Target)
		if err != nil {
			return Result{}, false, err
		}
		if exists && owner != a.Org {
			return refuse(Forbidden, "%s %q belongs to %s, not %s", a.Kind, a.Target, owner, a.Org), false, nil
		}
		next := hubapi.NextStage(stage, exists)
		if next == "" {
			return refuse(Conflict, "%s %q is in production already", a.Kind, a.Target), false, nil
		}
		if a.Stage != next {
			now := "does not exist yet"
			if exists {
				now = "is at " + hubapi.StageOf(stage)
			}
			return refuse(Conflict, "%s %q %s: it may apply for %s, not %s", a.Kind, a.Target, now, next, a.Stage), false, nil
		}
	}
	a.Sector = SectorOf(typ)
	a.Status = AppAdminReview
	if a.Sector != "" {
		a.Status = AppAuthorityReview
	}
	a.SubmittedBy, a.SubmittedAt, a.UpdatedAt, a.Decisions = c.Actor.SPIFFEID, c.Now.UTC(), c.Now.UTC(), []Decision{}
	return Result{}, false, putApplication(tx, &a, true)
}

func putApplication(tx *sql.Tx, a *Application, insert bool) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if insert {
		_, err = tx.Exec(`INSERT INTO applications(id, kind, target, org, sector, stage, status, submitted_by, submitted_at, updated_at, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.ID, a.Kind, a.Target, a.Org, a.Sector, a.Stage, a.Status, a.SubmittedBy, ms(a.SubmittedAt), ms(a.UpdatedAt), string(body))
		return err
	}
	var effective int64
	if day, ok := Day(a.EffectiveOn); ok {
		effective = ms(day)
	}
	_, err = tx.Exec(`UPDATE applications SET status = ?, updated_at = ?, body = ?, effective_at = ? WHERE id = ?`, a.Status, ms(a.UpdatedAt), string(body), effective, a.ID)
	return err
}

func application(q queryRower, id string) (*Application, error) {
	var body string
	err := q.QueryRow(`SELECT body FROM applications WHERE id = ?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a Application
	return &a, json.Unmarshal([]byte(body), &a)
}

func applyApplicationReview(tx *sql.Tx, c *ApplicationReview) (Result, bool, error) {
	a, res, err := waiting(tx, c.ID, AppAuthorityReview)
	if a == nil {
		return res, false, err
	}
	if res, no := needsRole(c.Actor, "review application "+c.ID, RoleReviewer+":"+a.Sector); no {
		return res, false, nil
	}
	// A refusal by the authority goes straight back to the applicant (point 5(1)): the ministry never
	// decides on it.
	event := EventAuthorityRefused
	a.Status = AppRefused
	if c.Approve {
		a.Status, event = AppAdminReview, ""
	}
	return Result{}, false, decided(tx, a, StepAuthority, c.Actor, c.Approve, c.Reason, c.Now, event)
}

func applyApplicationDecide(tx *sql.Tx, c *ApplicationDecide) (Result, bool, error) {
	a, res, err := waiting(tx, c.ID, AppAdminReview)
	if a == nil {
		return res, false, err
	}
	if res, no := needsRole(c.Actor, "decide application "+c.ID, RoleFederationAdmin); no {
		return res, false, nil
	}
	changed := false
	event := EventRefused
	a.Status = AppRefused
	if c.Approve {
		var res Result
		a.Status, event = AppApproved, EventApproved
		if day, ok := Day(a.EffectiveOn); ok && isLifecycle(a.Kind) && day.After(c.Now) {
			a.Status, event = AppScheduled, EventScheduled
		} else if isLifecycle(a.Kind) {
			res, changed, err = lifecycleEffect(tx, a, c.Now)
			a.EffectedAt = c.Now.UTC()
		} else {
			res, changed, err = effect(tx, a, c.Now)
		}
		if err != nil || res.Code != OK {
			if err == nil {
				res.Message = fmt.Sprintf("application %s cannot take effect: %s", c.ID, res.Message)
			}
			return res, false, err
		}
	}
	return Result{}, changed, decided(tx, a, StepAdmin, c.Actor, c.Approve, c.Reason, c.Now, event)
}

// effect makes an approved application's change: the rows the administrator's direct commands write, at
// the stage applied for. Every check comes before the first write, so a refusal leaves nothing behind.
func effect(tx *sql.Tx, a *Application, now time.Time) (Result, bool, error) {
	switch a.Kind {
	case ApplyOrg:
		o := *a.OrgInfo
		o.Now = now
		res, changed, err := applyOrgAdd(tx, &o)
		if err != nil || res.Code != OK || a.ContactEmail == "" {
			return res, changed, err
		}
		_, err = tx.Exec(`UPDATE orgs SET contact_email = ? WHERE code = ?`, a.ContactEmail, o.Code)
		return res, changed, err
	case ApplyService:
		stage, _, exists, err := currentStage(tx, ApplyService, a.Target)
		if err != nil {
			return Result{}, false, err
		}
		if hubapi.NextStage(stage, exists) != a.Stage {
			return refuse(Conflict, "service %q is at %s now", a.Target, hubapi.StageOf(stage)), false, nil
		}
		changed := false
		if !exists {
			res, ch, err := applyServiceAdd(tx, &ServiceAdd{Service: *a.Service, Now: now})
			if err != nil || res.Code != OK {
				return res, false, err
			}
			changed = ch
		}
		if err := setServiceStage(tx, a.Service, a.Stage); err != nil {
			return Result{}, false, err
		}
		return Result{}, changed, setPilotSubjects(tx, ApplyService, a.Target, a.TestSubjects)
	case ApplyDataset:
		stage, _, exists, err := currentStage(tx, ApplyDataset, a.Target)
		if err != nil {
			return Result{}, false, err
		}
		if hubapi.NextStage(stage, exists) != a.Stage {
			return refuse(Conflict, "dataset %q is at %s now", a.Target, hubapi.StageOf(stage)), false, nil
		}
		if !exists {
			if res, _, err := applyDatasetAdd(tx, &DatasetAdd{Dataset: *a.Dataset, Now: now}); err != nil || res.Code != OK {
				return res, false, err
			}
		}
		if err := setDatasetDefinition(tx, a.Dataset); err != nil {
			return Result{}, false, err
		}
		if _, err := tx.Exec(`UPDATE datasets SET stage = ? WHERE id = ?`, a.Stage, a.Target); err != nil {
			return Result{}, false, err
		}
		return Result{}, true, setPilotSubjects(tx, ApplyDataset, a.Target, a.TestSubjects)
	}
	return Result{}, false, fmt.Errorf("application %s: unknown kind %q", a.ID, a.Kind)
}

// setServiceStage writes the service as the application describes it at stage: each step's application
// carries the whole review (purpose, terms, datasets), which may have changed since the last. The SP
// connector stays the one the service was registered with.
func setServiceStage(tx *sql.Tx, svc *Service, stage string) error {
	var body string
	if err := tx.QueryRow(`SELECT body FROM services WHERE id = ?`, svc.ID).Scan(&body); err != nil {
		return err
	}
	var cur hubapi.Service
	if err := json.Unmarshal([]byte(body), &cur); err != nil {
		return err
	}
	next := svc.api()
	next.SPOrg, next.SPConnector = cur.SPOrg, cur.SPConnector
	next.Status, next.CreatedAt, next.Stage = cur.Status, cur.CreatedAt, stage
	out, err := json.Marshal(&next)
	if err != nil {
		return err
	}
	_, err = tx.Exec(`UPDATE services SET body = ? WHERE id = ?`, string(out), svc.ID)
	return err
}

// setPilotSubjects keeps a pilot's test subjects; any other stage serves every citizen and keeps none.
func setPilotSubjects(tx *sql.Tx, kind, target string, hashes []string) error {
	if _, err := tx.Exec(`DELETE FROM pilot_subjects WHERE kind = ? AND target = ?`, kind, target); err != nil {
		return err
	}
	for _, h := range hashes {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO pilot_subjects(kind, target, hash) VALUES (?, ?, ?)`, kind, target, h); err != nil {
			return err
		}
	}
	return nil
}

// Application finds one application; nil if there is none.
func (f *FSM) Application(id string) (*Application, error) { return application(f.db, id) }

// ApplicationFilter narrows a list of applications; empty fields match all.
type ApplicationFilter struct {
	Org, Sector, Status, Kind string
}

// Applications lists applications, newest first.
func (f *FSM) Applications(q ApplicationFilter) ([]Application, error) {
	rows, err := f.db.Query(`SELECT body FROM applications WHERE (? = '' OR org = ?) AND (? = '' OR sector = ?) AND (? = '' OR status = ?) AND (? = '' OR kind = ?)
		ORDER BY submitted_at DESC, id`, q.Org, q.Org, q.Sector, q.Sector, q.Status, q.Status, q.Kind, q.Kind)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Application{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var a Application
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// PilotSubject says whether a subject's lookup hash is among a pilot's test subjects for a service or a
// dataset (kind ApplyService or ApplyDataset).
func (f *FSM) PilotSubject(kind, target, hash string) (bool, error) {
	var n int
	err := f.db.QueryRow(`SELECT count(*) FROM pilot_subjects WHERE kind = ? AND target = ? AND hash = ?`, kind, target, hash).Scan(&n)
	return n > 0, err
}
