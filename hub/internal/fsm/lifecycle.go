package fsm

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Changes, suspensions, terminations and resumptions of a service or a dataset are applications too
// (介接作業要點 5(2)-(3), 6(3)): filed at least NoticeWorkdays working days before the day they take effect
// (a resumption needs no notice), reviewed and decided like the first ones, and once approved they wait,
// scheduled, until the leader's LifecycleTick finds their day come. An emergency suspension (Suspend) is
// the federation administrator's and takes effect at once.

// Kinds of lifecycle application.
const (
	ApplyChange    = "change"
	ApplySuspend   = "suspend"
	ApplyResume    = "resume"
	ApplyTerminate = "terminate"
)

// Application states of the lifecycle: approved and waiting for its day.
const AppScheduled = "scheduled"

// StepSystem is a decision the hub made itself: a scheduled change that could no longer take effect.
const StepSystem = "system"

// What a lifecycle application is about.
const (
	OnService = "service"
	OnDataset = "dataset"
)

func isLifecycle(kind string) bool {
	return slices.Contains([]string{ApplyChange, ApplySuspend, ApplyResume, ApplyTerminate}, kind)
}

func (a *Application) validateLifecycle() error {
	if a.Stage != "" || len(a.TestSubjects) > 0 {
		return fmt.Errorf("application: a %s carries no stage and no test subjects", a.Kind)
	}
	switch a.On {
	case OnService, OnDataset:
	case OnOrg:
		if a.Kind == ApplySuspend || a.Kind == ApplyResume {
			return fmt.Errorf("on: an organisation changes or terminates; its services and datasets are suspended and resumed one by one")
		}
	default:
		return fmt.Errorf("on: %q is not service, dataset or org", a.On)
	}
	// A change carries what it is about as it will be; nothing else carries anything.
	carried := map[string]bool{OnService: a.Service != nil, OnDataset: a.Dataset != nil, OnOrg: a.OrgInfo != nil}
	for _, on := range []string{OnService, OnDataset, OnOrg} {
		if carried[on] && (a.Kind != ApplyChange || on != a.On) {
			return fmt.Errorf("application: a %s of a %s carries no %s", a.Kind, a.On, on)
		}
	}
	if a.Kind == ApplyChange {
		if !carried[a.On] {
			return fmt.Errorf("application: a change carries the %s as it will be", a.On)
		}
		if err := a.validateChange(); err != nil {
			return err
		}
	}
	if a.Target == "" || len(a.Target) > 100 {
		return errors.New("target: the service's, dataset's or organisation's id is required")
	}
	if a.EffectiveOn == "" && a.Kind != ApplyResume {
		return fmt.Errorf("effective_on: a %s names the day it takes effect, at least %d working days ahead", a.Kind, NoticeWorkdays)
	}
	if a.EffectiveOn != "" {
		if _, ok := Day(a.EffectiveOn); !ok {
			return fmt.Errorf("effective_on: %q is not a date YYYY-MM-DD", a.EffectiveOn)
		}
	}
	return nil
}

// lifecycleTarget reads the owner and status of what a lifecycle application is about; exists false if
// there is none.
func lifecycleTarget(tx *sql.Tx, on, id string) (owner, status string, exists bool, err error) {
	switch on {
	case OnService:
		var body string
		err = tx.QueryRow(`SELECT body, sp_org FROM services WHERE id = ?`, id).Scan(&body, &owner)
		if err == nil {
			var s hubapi.Service
			err = json.Unmarshal([]byte(body), &s)
			status = s.Status
		}
	case OnOrg:
		owner = id
		err = tx.QueryRow(`SELECT status FROM orgs WHERE code = ?`, id).Scan(&status)
	default:
		err = tx.QueryRow(`SELECT status, dp_org FROM datasets WHERE id = ?`, id).Scan(&status, &owner)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	return owner, status, err == nil, err
}

// lifecycleAllowed says why a lifecycle application cannot be filed (or take effect) on a target in
// status; "" if it can.
func lifecycleAllowed(kind, on, target, status string) string {
	active := status == hubapi.StatusActive || status == hubapi.DatasetMaintenance
	switch {
	case kind == ApplySuspend && !active:
		return fmt.Sprintf("%s %q is %s, not active", on, target, status)
	case kind == ApplyResume && active:
		return fmt.Sprintf("%s %q is %s already", on, target, status)
	case (kind == ApplyTerminate || kind == ApplyChange) && status == hubapi.StatusTerminated:
		return fmt.Sprintf("%s %q is terminated; it applies to resume first", on, target)
	}
	return ""
}

// checkNotice refuses a change whose day is less than NoticeWorkdays working days after now.
func checkNotice(tx *sql.Tx, a *Application, now time.Time) (Result, error) {
	if a.EffectiveOn == "" || a.Kind == ApplyResume {
		return Result{}, nil
	}
	day, _ := Day(a.EffectiveOn)
	cal := &calendar{q: tx}
	deadline, err := cal.noticeDeadline(day)
	var fe *Error
	if errors.As(err, &fe) {
		return refuse(fe.Code, "%s", fe.Message), nil
	}
	if err != nil {
		return Result{}, err
	}
	if DayOf(now).After(deadline) {
		return refuse(Invalid, "a %s taking effect on %s is filed at least %d working days ahead, by %s; today is %s",
			a.Kind, a.EffectiveOn, NoticeWorkdays, deadline.Format(time.DateOnly), DayOf(now).Format(time.DateOnly)), nil
	}
	return Result{}, nil
}

// lifecycleEffect makes an approved lifecycle application's change.
func lifecycleEffect(tx *sql.Tx, a *Application, now time.Time) (Result, bool, error) {
	_, status, exists, err := lifecycleTarget(tx, a.On, a.Target)
	if err != nil {
		return Result{}, false, err
	}
	if !exists {
		return refuse(NotFound, "%s %q does not exist", a.On, a.Target), false, nil
	}
	if why := lifecycleAllowed(a.Kind, a.On, a.Target, status); why != "" {
		return refuse(Conflict, "%s", why), false, nil
	}
	next := map[string]string{ApplySuspend: hubapi.StatusSuspended, ApplyResume: hubapi.StatusActive, ApplyTerminate: hubapi.StatusTerminated}[a.Kind]
	switch {
	case a.On == OnOrg:
		return orgEffect(tx, a, now)
	case a.On == OnDataset && a.Kind == ApplyChange:
		return Result{}, true, setDatasetDefinition(tx, a.Dataset)
	case a.On == OnDataset:
		_, err := tx.Exec(`UPDATE datasets SET status = ? WHERE id = ?`, next, a.Target)
		return Result{}, true, err
	}
	return setServiceStatus(tx, a, next)
}

// setServiceStatus changes a service's status (suspended, active, terminated), or for a change its
// description, keeping its stage.
func setServiceStatus(tx *sql.Tx, a *Application, next string) (Result, bool, error) {
	var body string
	if err := tx.QueryRow(`SELECT body FROM services WHERE id = ?`, a.Target).Scan(&body); err != nil {
		return Result{}, false, err
	}
	var s hubapi.Service
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		return Result{}, false, err
	}
	if a.Kind == ApplyChange {
		return Result{}, true, setServiceStage(tx, a.Service, s.Stage)
	}
	s.Status = next
	out, err := json.Marshal(&s)
	if err != nil {
		return Result{}, false, err
	}
	_, err = tx.Exec(`UPDATE services SET body = ? WHERE id = ?`, string(out), a.Target)
	return Result{}, true, err
}

// LifecycleTick puts into effect the scheduled applications whose day has come; the leader proposes it
// now and then with its clock.
type LifecycleTick struct {
	Now time.Time `json:"now"`
}

func (c *LifecycleTick) Validate() error {
	if c.Now.IsZero() {
		return errors.New("lifecycle tick: now is required")
	}
	return nil
}

func applyLifecycleTick(tx *sql.Tx, c *LifecycleTick) (Result, bool, error) {
	ids, err := queryIDs(tx, `SELECT id FROM applications WHERE status = ? AND effective_at <= ? ORDER BY effective_at, id`, AppScheduled, ms(c.Now))
	if err != nil {
		return Result{}, false, err
	}
	changed := false
	for _, id := range ids {
		a, err := application(tx, id)
		if err != nil {
			return Result{}, false, err
		}
		if a.Status != AppScheduled {
			// Closed by an earlier one of this tick: its organisation's termination.
			continue
		}
		res, ch, err := lifecycleEffect(tx, a, c.Now)
		if err != nil {
			return Result{}, false, err
		}
		changed = changed || ch
		a.UpdatedAt = c.Now.UTC()
		event := EventEffected
		if res.Code == OK {
			a.Status, a.EffectedAt = AppApproved, c.Now.UTC()
		} else {
			event, a.Status = EventFailed, AppRefused
			a.Decisions = append(a.Decisions, Decision{Step: StepSystem, Reviewer: "hub", Roles: []string{}, Reason: "could not take effect: " + res.Message, At: c.Now.UTC()})
		}
		if err := putApplication(tx, a, false); err != nil {
			return Result{}, false, err
		}
		if err := tellApplicant(tx, a, event, c.Now); err != nil {
			return Result{}, false, err
		}
		// The hub's own action, in the operator log with the operators' so that the changes of a period
		// are all there.
		e := oplog.Entry{At: c.Now, Actor: "hub", Roles: []string{}, Op: "application effect", Outcome: oplog.OutcomeOK,
			Params: map[string]string{"id": a.ID, "kind": a.Kind, "on": a.On, "target": a.Target, "effective_on": a.EffectiveOn}}
		if res.Code != OK {
			e.Outcome, e.Detail = oplog.OutcomeRefused, res.Message
		}
		if err := appendOplog(tx, e); err != nil {
			return Result{}, false, err
		}
	}
	return Result{}, changed, nil
}

// Suspend is the federation administrator's emergency suspension of a service or a dataset: at once,
// without notice (point 6(3)'s emergency). It resumes on an application.
type Suspend struct {
	On     string    `json:"on"`
	Target string    `json:"target"`
	Reason string    `json:"reason"`
	Now    time.Time `json:"now"`
}

func (c *Suspend) Validate() error {
	if c.On != OnService && c.On != OnDataset {
		return fmt.Errorf("on: %q is not service or dataset", c.On)
	}
	if c.Target == "" || len(c.Target) > 100 {
		return errors.New("target: required")
	}
	if c.Reason == "" || len(c.Reason) > 2000 {
		return errors.New("reason: required, at most 2000 bytes")
	}
	return nil
}

func applySuspend(tx *sql.Tx, c *Suspend) (Result, bool, error) {
	return lifecycleEffect(tx, &Application{Kind: ApplySuspend, On: c.On, Target: c.Target}, c.Now)
}

// ScheduledChanges lists the approved changes, suspensions and terminations still to take effect: what
// the portal announces. Every catalogue page reads it, so it reads the scheduled ones only, by index.
func (f *FSM) ScheduledChanges() ([]Application, error) {
	all, err := f.Applications(ApplicationFilter{Status: AppScheduled})
	if err != nil {
		return nil, err
	}
	out := []Application{}
	for _, a := range all {
		if isLifecycle(a.Kind) && a.Kind != ApplyResume {
			out = append(out, a)
		}
	}
	return out, nil
}
