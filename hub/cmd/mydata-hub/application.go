package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

const applicationUsage = `  application submit org --code C --name-zh N --name-en N --type T [--authority A] [--note N]
      [--contact-email E]                              an organisation applies to join; a state-owned
                                                       enterprise names its ministry with --authority;
                                                       every submit takes --contact-email, where the hub
                                                       mails the decisions (else the organisation's)
  application submit service --stage sandbox|pilot|production (the flags of service add)
      [--test-subject ID ...] [--test-subjects-file F] [--note N]
                                                       a service applies for its next stage; a pilot lists
                                                       its test subjects (national IDs, kept as keyed hashes)
  application submit dataset --stage sandbox|pilot|production (the flags of dataset add) [--test-subject ID ...]
  application submit suspend|terminate|resume --service ID|--dataset ID|--org C [--effective-on YYYY-MM-DD]
                                                       on notice: filed at least 7 working days before the
                                                       day (a resumption needs none); approved, it takes
                                                       effect by itself at that day's midnight (Taipei);
                                                       an organisation only terminates: its services and
                                                       datasets end and its connectors are revoked
  application submit change [service] --effective-on YYYY-MM-DD (the flags of service add)
                                                       a service as it will be from that day
  application submit change dataset --effective-on YYYY-MM-DD (the flags of dataset add)
                                                       a dataset in production as it will be (its
                                                       connectors stay); the portal announces it
  application submit change org --effective-on YYYY-MM-DD --code C --name-zh N --name-en N --type T
                                                       an organisation's names, type (and with
                                                       --contact-email its contact) from that day
  application list [--status S] [--kind K] [--org O]   S: authority-review, admin-review, scheduled,
                                                       approved, refused
  application show --id ID                             the application, its review items and its decisions
  application review --id ID --approve|--refuse --reason R
                                                       the supervising authority of the sector (reviewer)
  application decide --id ID --approve|--refuse --reason R
                                                       the federation administrator, after the authority
  suspend --service ID|--dataset ID --reason R         emergency suspension, at once (federation-admin);
                                                       it resumes on an application
  calendar load FILE                                   the working-day calendar of a year: one day a line,
                                                       "YYYY-MM-DD holiday|workday [note]" (holidays on
                                                       weekdays, make-up workdays on weekends; # comments)
  calendar show --year Y
`

// application runs `admin application SUB`.
func (a *adminCtx) application(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "submit":
		return a.applicationSubmit(ctx, args)
	case "list":
		return a.applicationList(ctx, args)
	case "show":
		return a.applicationShow(ctx, args)
	case "review", "decide":
		return a.applicationDecide(ctx, sub, args)
	}
	return fmt.Errorf("admin application: unknown command %q", sub)
}

func (a *adminCtx) applicationSubmit(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("application submit: give org, service or dataset")
	}
	kind := args[0]
	fs := flag.NewFlagSet("application submit "+kind, flag.ContinueOnError)
	req := api.ApplicationRequest{Kind: kind}
	fs.StringVar(&req.Note, "note", "", "a note for the reviewers")
	fs.StringVar(&req.Authority, "authority", "", "the supervising authority (a state-owned enterprise's ministry)")
	fs.StringVar(&req.ContactEmail, "contact-email", "", "where the hub e-mails the decisions (an organisation's joining or change: its contact)")
	var subjects stringList
	var subjectsFile string
	switch kind {
	case fsm.ApplyOrg:
		o, err := orgFlags(fs, args[1:])
		if err != nil {
			return err
		}
		req.Org = &o
	case fsm.ApplySuspend, fsm.ApplyTerminate, fsm.ApplyResume:
		svc := fs.String("service", "", "the service's id")
		ds := fs.String("dataset", "", "the dataset's id")
		org := fs.String("org", "", "the organisation's code (terminate only)")
		fs.StringVar(&req.EffectiveOn, "effective-on", "", "the day it takes effect, YYYY-MM-DD (Taipei)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if req.On, req.Target = onTarget(*svc, *ds, *org); req.On == "" {
			return fmt.Errorf("%s: give one of --service, --dataset or --org", fs.Name())
		}
	case fsm.ApplyChange:
		fs.StringVar(&req.EffectiveOn, "effective-on", "", "the day it takes effect, YYYY-MM-DD (Taipei)")
		// change [service|dataset|org] FLAGS: a service when the first word is a flag, as before.
		of, rest := fsm.OnService, args[1:]
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			of, rest = rest[0], rest[1:]
		}
		req.On = of
		switch of {
		case fsm.OnService, fsm.OnDataset:
			id, err := definitionFlags(fs, rest, of, &req, "effective-on")
			if err != nil {
				return err
			}
			req.Target = id
		case fsm.OnOrg:
			o, err := orgFlags(fs, rest, "effective-on")
			if err != nil {
				return err
			}
			req.Org, req.Target = &o, o.Code
		default:
			return fmt.Errorf("application submit change: %q is not service, dataset or org", of)
		}
	case fsm.ApplyService, fsm.ApplyDataset:
		fs.StringVar(&req.Stage, "stage", "", "the stage applied for: sandbox, pilot or production")
		fs.Var(&subjects, "test-subject", "a pilot's test subject, by national ID (repeat for several)")
		fs.StringVar(&subjectsFile, "test-subjects-file", "", "a pilot's test subjects, one national ID a line")
		on := map[string]string{fsm.ApplyService: fsm.OnService, fsm.ApplyDataset: fsm.OnDataset}[kind]
		if _, err := definitionFlags(fs, args[1:], on, &req, "stage"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("application submit: %q is not org, service, dataset, change, suspend, terminate or resume", kind)
	}
	req.TestSubjects = subjects
	if subjectsFile != "" {
		f, err := os.Open(subjectsFile)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				req.TestSubjects = append(req.TestSubjects, l)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	var saved api.ApplicationView
	if err := a.client.Do(ctx, http.MethodPost, api.PathApplications, req, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "application %s filed: %s %s%s, now %s\n", saved.ID, saved.Kind, saved.Target, stageSuffix(saved.Stage), waitsFor(saved.Application))
	})
}

// onTarget reads --service, --dataset or --org: what a lifecycle application or a suspension is about;
// "" unless exactly one is given.
func onTarget(service, dataset, org string) (on, target string) {
	given := 0
	for _, v := range []string{service, dataset, org} {
		if v != "" {
			given++
		}
	}
	switch {
	case given != 1:
	case service != "":
		return fsm.OnService, service
	case dataset != "":
		return fsm.OnDataset, dataset
	default:
		return fsm.OnOrg, org
	}
	return "", ""
}

// orgFlags reads an organisation as it applies to join or will be after a change; required names the
// other flags that must be given.
// definitionFlags reads into req the service (on is fsm.OnService) or the dataset an application
// defines, by the flags of service add or dataset add and the required ones fs defines besides; it
// returns the service's or dataset's id.
func definitionFlags(fs *flag.FlagSet, args []string, on string, req *api.ApplicationRequest, required ...string) (string, error) {
	if on == fsm.OnService {
		s, err := serviceFlags(fs, args, required...)
		req.Service = &s
		return s.ID, err
	}
	d, err := datasetFlags(fs, args, required...)
	req.Dataset = &d
	return d.ID, err
}

func orgFlags(fs *flag.FlagSet, args []string, required ...string) (hubapi.Org, error) {
	var o hubapi.Org
	fs.StringVar(&o.Code, "code", "", "organisation code (a-z, 0-9, '-')")
	fs.StringVar(&o.NameZh, "name-zh", "", "name in Chinese")
	fs.StringVar(&o.NameEn, "name-en", "", "name in English")
	fs.StringVar(&o.Type, "type", "", "organisation type")
	err := parseFlags(fs, args, append(required, "code", "name-zh", "name-en", "type")...)
	return o, err
}

func (a *adminCtx) suspend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("suspend", flag.ContinueOnError)
	svc := fs.String("service", "", "the service's id")
	ds := fs.String("dataset", "", "the dataset's id")
	reason := fs.String("reason", "", "why, recorded in the operator log")
	if err := parseFlags(fs, args, "reason"); err != nil {
		return err
	}
	req := api.SuspendRequest{Reason: *reason}
	if req.On, req.Target = onTarget(*svc, *ds, ""); req.On == "" {
		return errors.New("suspend: give --service or --dataset")
	}
	if err := a.client.Do(ctx, http.MethodPost, api.PathSuspend, req, nil); err != nil {
		return err
	}
	return a.print(req, func(w *table) { fmt.Fprintf(w, "%s %s is suspended from now\n", req.On, req.Target) })
}

func (a *adminCtx) calendar(ctx context.Context, sub string, args []string) error {
	var c fsm.CalendarLoad
	switch sub {
	case "load":
		if len(args) != 1 {
			return errors.New("calendar load: give the file")
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		parsed, err := fsm.ParseCalendar(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if err := a.client.Do(ctx, http.MethodPost, api.PathCalendar, parsed, &c); err != nil {
			return err
		}
	case "show":
		fs := flag.NewFlagSet("calendar show", flag.ContinueOnError)
		year := fs.String("year", "", "the year")
		if err := parseFlags(fs, args, "year"); err != nil {
			return err
		}
		if err := a.client.Do(ctx, http.MethodGet, api.PathCalendar+"?year="+url.QueryEscape(*year), nil, &c); err != nil {
			return err
		}
	default:
		return fmt.Errorf("admin calendar: unknown command %q", sub)
	}
	return a.print(c, func(w *table) {
		fmt.Fprintf(w, "calendar %d: %d days named\n", c.Year, len(c.Days))
		for _, d := range c.Days {
			t, _ := time.Parse(time.DateOnly, d.Date)
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Date, t.Weekday().String()[:3], d.Kind, d.Note)
		}
	})
}

func stageSuffix(stage string) string {
	if stage == "" {
		return ""
	}
	return " for " + stage
}

// waitsFor says where an application stands in words.
func waitsFor(a fsm.Application) string {
	switch a.Status {
	case fsm.AppAuthorityReview:
		return "waiting for " + fsm.RoleReviewer + ":" + a.Sector
	case fsm.AppAdminReview:
		return "waiting for " + fsm.RoleFederationAdmin
	case fsm.AppScheduled:
		return "scheduled for " + a.EffectiveOn
	}
	return a.Status
}

func (a *adminCtx) applicationList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("application list", flag.ContinueOnError)
	status := fs.String("status", "", "only applications in this state")
	kind := fs.String("kind", "", "only org, service or dataset applications")
	org := fs.String("org", "", "only this organisation's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"status": *status, "kind": *kind, "org": *org} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := api.PathApplications
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var apps []api.ApplicationView
	if err := a.client.Do(ctx, http.MethodGet, path, nil, &apps); err != nil {
		return err
	}
	return a.print(apps, func(w *table) {
		fmt.Fprintln(w, "ID\tKIND\tTARGET\tORG\tSTAGE\tSTATUS\tSUBMITTED\tNAME")
		for _, x := range apps {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Kind, x.Target, x.Org, dash(x.Stage), x.Status,
				x.SubmittedAt.Format(time.DateOnly), applicationName(x.Application))
		}
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func applicationName(a fsm.Application) string {
	switch {
	case a.OrgInfo != nil:
		return a.OrgInfo.NameZh + " " + a.OrgInfo.NameEn
	case a.Service != nil:
		return a.Service.NameZh + " " + a.Service.NameEn
	case a.Dataset != nil:
		return a.Dataset.NameZh + " " + a.Dataset.NameEn
	}
	return ""
}

func (a *adminCtx) applicationShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("application show", flag.ContinueOnError)
	id := fs.String("id", "", "application id")
	if err := parseFlags(fs, args, "id"); err != nil {
		return err
	}
	var x api.ApplicationView
	if err := a.client.Do(ctx, http.MethodGet, api.PathApplications+"/"+*id, nil, &x); err != nil {
		return err
	}
	return a.print(x, func(w *table) {
		fmt.Fprintf(w, "application\t%s\n", x.ID)
		fmt.Fprintf(w, "for\t%s %s%s\n", x.Kind, x.Target, stageSuffix(x.Stage))
		fmt.Fprintf(w, "organisation\t%s\n", x.Org)
		if x.EffectiveOn != "" {
			fmt.Fprintf(w, "takes effect\t%s (Taipei midnight)\n", x.EffectiveOn)
		}
		if x.Sector != "" {
			fmt.Fprintf(w, "supervising authority\t%s:%s %s\n", fsm.RoleReviewer, x.Sector, x.Authority)
		}
		fmt.Fprintf(w, "status\t%s\n", waitsFor(x.Application))
		fmt.Fprintf(w, "submitted\t%s by %s\n", x.SubmittedAt.Format(time.RFC3339), x.SubmittedBy)
		if o := x.OrgInfo; o != nil {
			fmt.Fprintf(w, "name\t%s / %s\ntype\t%s\n", o.NameZh, o.NameEn, o.Type)
		}
		if s := x.Service; s != nil {
			// The review items of point 5(1)4-5: purpose, terms shown to citizens, datasets.
			fmt.Fprintf(w, "name\t%s / %s\nsp connector\t%s/%s\nmodes\t%s\n", s.NameZh, s.NameEn, s.SPOrg, s.SPConnector, strings.Join(s.Modes, ","))
			fmt.Fprintf(w, "purpose\t%s\n", s.Purpose)
			fmt.Fprintf(w, "terms (v%s)\t%s\n", s.TermsVersion, strings.ReplaceAll(s.Terms, "\n", " "))
			limit := fmt.Sprintf("within the limit of %d", hubapi.MaxDatasetsWithoutBasis)
			if x.OverLimit {
				limit = fmt.Sprintf("over the limit of %d; legal basis: %s", hubapi.MaxDatasetsWithoutBasis, s.LegalBasis)
			}
			fmt.Fprintf(w, "datasets\t%s (%d, %s)\n", strings.Join(s.Datasets, ", "), x.DatasetCount, limit)
			fmt.Fprintf(w, "redirect uris\t%s\n", dash(strings.Join(s.RedirectURIs, " ")))
		}
		if d := x.Dataset; d != nil {
			fmt.Fprintf(w, "name\t%s / %s\ndp connector\t%s/%s\nmin aal\t%d\n", d.NameZh, d.NameEn, d.DPOrg, d.DPConnector, d.MinAAL)
		}
		if x.TestSubjects > 0 {
			fmt.Fprintf(w, "test subjects\t%d\n", x.TestSubjects)
		}
		if x.Note != "" {
			fmt.Fprintf(w, "note\t%s\n", x.Note)
		}
		if x.ContactEmail != "" {
			fmt.Fprintf(w, "contact\t%s\n", x.ContactEmail)
		}
		for _, d := range x.Decisions {
			verdict := "refused"
			if d.Approve {
				verdict = "approved"
			}
			fmt.Fprintf(w, "%s\t%s by %s at %s: %s\n", d.Step, verdict, d.Reviewer, d.At.Format(time.RFC3339), d.Reason)
		}
	})
}

func (a *adminCtx) applicationDecide(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("application "+verb, flag.ContinueOnError)
	id := fs.String("id", "", "application id")
	approve := fs.Bool("approve", false, "approve it")
	refuse := fs.Bool("refuse", false, "refuse it")
	reason := fs.String("reason", "", "why, recorded with the decision")
	if err := parseFlags(fs, args, "id", "reason"); err != nil {
		return err
	}
	if *approve == *refuse {
		return fmt.Errorf("application %s: give --approve or --refuse", verb)
	}
	var x api.ApplicationView
	if err := a.client.Do(ctx, http.MethodPost, api.PathApplications+"/"+*id+"/"+verb, api.DecisionRequest{Approve: *approve, Reason: *reason}, &x); err != nil {
		return err
	}
	return a.print(x, func(w *table) {
		fmt.Fprintf(w, "application %s (%s %s%s) is now %s\n", x.ID, x.Kind, x.Target, stageSuffix(x.Stage), waitsFor(x.Application))
	})
}
