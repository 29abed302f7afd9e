package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// splitPair reads ORG/NAME.
func splitPair(flagName, v string) (string, string, error) {
	a, b, ok := strings.Cut(v, "/")
	if !ok || a == "" || b == "" {
		return "", "", fmt.Errorf("--%s: want ORG/CONNECTOR, got %q", flagName, v)
	}
	return a, b, nil
}

func (a *adminCtx) datasetAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dataset add", flag.ContinueOnError)
	d, err := datasetFlags(fs, args)
	if err != nil {
		return err
	}
	var saved hubapi.Dataset
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathDatasets, d, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "added dataset %s served by %s/%s\n", saved.ID, saved.DPOrg, strings.Join(saved.Connectors(), ","))
	})
}

// datasetFlags reads a dataset from args by the flags of dataset add; required names the flags that fs
// defines besides and must be given (an application's --stage, a change's --effective-on).
func datasetFlags(fs *flag.FlagSet, args []string, required ...string) (hubapi.Dataset, error) {
	var d hubapi.Dataset
	var dp string
	fs.StringVar(&d.ID, "id", "", "dataset id, <org>.<name> (e.g. moi.household)")
	fs.StringVar(&d.NameZh, "name-zh", "", "name in Chinese")
	fs.StringVar(&d.NameEn, "name-en", "", "name in English")
	fs.StringVar(&d.Description, "description", "", "what the dataset holds")
	fs.StringVar(&dp, "dp", "", "the DP connector that serves it, ORG/CONNECTOR, or several of the org: ORG/C1,C2 (any one serves a ticket)")
	fs.IntVar(&d.MinAAL, "min-aal", hubapi.AALMedium, "least identity assurance level: 1 low, 2 medium, 3 high")
	fs.StringVar(&d.ContentType, "content-type", "application/json", "application/json, text/csv, application/pdf or application/xml")
	fs.BoolVar(&d.Async, "async", false, "the agency may answer later (the SP retries for up to 90 minutes)")
	fs.BoolVar(&d.Download, "download", false, "citizens may download it themselves on the portal")
	var methods string
	fs.StringVar(&methods, "methods", "", "comma-separated login method ids, the only ones the agency accepts for this dataset (default: any of --min-aal or higher)")
	if err := parseFlags(fs, args, append(required, "id", "name-zh", "name-en", "dp")...); err != nil {
		return d, err
	}
	if methods != "" {
		d.Methods = strings.Split(methods, ",")
	}
	org, names, err := splitDPs(dp)
	if err != nil {
		return d, err
	}
	d.DPOrg, d.DPConnector, d.MoreDPConnectors = org, names[0], names[1:]
	return d, nil
}

// splitDPs reads ORG/C1[,C2...]: a dataset's connectors, all of its agency.
func splitDPs(v string) (string, []string, error) {
	org, names, err := splitPair("dp", v)
	if err != nil {
		return "", nil, fmt.Errorf("%w (or ORG/C1,C2 for several connectors)", err)
	}
	list := strings.Split(names, ",")
	for _, n := range list {
		if n == "" || strings.Contains(n, "/") {
			return "", nil, fmt.Errorf("--dp: %q: the connectors must be names of %s's, ORG/C1,C2", v, org)
		}
	}
	return org, list, nil
}

// datasetConnectors sets the connectors that serve a dataset.
func (a *adminCtx) datasetConnectors(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dataset connectors", flag.ContinueOnError)
	id := fs.String("id", "", "dataset id")
	dp := fs.String("dp", "", "the connectors that serve it, ORG/C1[,C2...], the first as its dp_connector")
	if err := parseFlags(fs, args, "id", "dp"); err != nil {
		return err
	}
	org, names, err := splitDPs(*dp)
	if err != nil {
		return err
	}
	if org != strings.SplitN(*id, ".", 2)[0] {
		return fmt.Errorf("--dp: dataset %s is %s's; its connectors must be %s's too, not %s's", *id, strings.SplitN(*id, ".", 2)[0], strings.SplitN(*id, ".", 2)[0], org)
	}
	var saved hubapi.Dataset
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathDatasets+"/"+*id+"/connectors", hubapi.DatasetConnectorsRequest{Connectors: names}, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "dataset %s is served by %s/%s\n", saved.ID, saved.DPOrg, strings.Join(saved.Connectors(), ","))
	})
}

func (a *adminCtx) datasetList(ctx context.Context) error {
	var ds []hubapi.Dataset
	if err := a.client.Do(ctx, http.MethodGet, hubapi.PathDatasets, nil, &ds); err != nil {
		return err
	}
	return a.print(ds, func(w *table) {
		fmt.Fprintln(w, "ID\tDP\tMIN AAL\tMETHODS\tTYPE\tASYNC\tSTATUS\tSTAGE\tNAME (ZH)\tNAME (EN)")
		for _, d := range ds {
			m := "-"
			if len(d.Methods) > 0 {
				m = strings.Join(d.Methods, ",")
			}
			fmt.Fprintf(w, "%s\t%s/%s\t%d\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", d.ID, d.DPOrg, strings.Join(d.Connectors(), ","), d.MinAAL, m, d.ContentType, d.Async, d.Status,
				hubapi.StageOf(d.Stage), d.NameZh, d.NameEn)
		}
	})
}

func (a *adminCtx) datasetStatus(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("dataset "+verb, flag.ContinueOnError)
	id := fs.String("id", "", "dataset id")
	if err := parseFlags(fs, args, "id"); err != nil {
		return err
	}
	status := map[string]string{"maintenance": hubapi.DatasetMaintenance, "activate": hubapi.DatasetActive}[verb]
	var saved hubapi.Dataset
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathDatasets+"/"+*id+"/status", hubapi.ConnectorStatusRequest{Status: status}, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) { fmt.Fprintf(w, "dataset %s is now %s\n", saved.ID, saved.Status) })
}

func (a *adminCtx) serviceAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("service add", flag.ContinueOnError)
	s, err := serviceFlags(fs, args)
	if err != nil {
		return err
	}
	var saved hubapi.Service
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathServices, s, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "added service %s (%s) for %s/%s: %s\n", saved.ID, saved.NameEn, saved.SPOrg, saved.SPConnector, strings.Join(saved.Datasets, ", "))
	})
}

// serviceFlags reads a service from args by the flags of service add; required names the flags that fs
// defines besides and must be given (an application's --stage, a change's --effective-on).
func serviceFlags(fs *flag.FlagSet, args []string, required ...string) (hubapi.Service, error) {
	var s hubapi.Service
	var sp, modes, datasets, termsFile string
	var redirects stringList
	fs.StringVar(&s.ID, "id", "", "service id, the OAuth client_id")
	fs.StringVar(&s.NameZh, "name-zh", "", "name in Chinese")
	fs.StringVar(&s.NameEn, "name-en", "", "name in English")
	fs.StringVar(&sp, "sp", "", "the SP connector that redeems consents, ORG/CONNECTOR")
	fs.StringVar(&modes, "modes", hubapi.ModeOnline, "online, counter or online,counter")
	fs.StringVar(&datasets, "datasets", "", "comma-separated dataset ids (at most 5 without --legal-basis)")
	fs.StringVar(&s.Purpose, "purpose", "", "why the service needs the data, shown to the citizen")
	fs.StringVar(&s.Terms, "terms", "", "terms shown before consent")
	fs.StringVar(&termsFile, "terms-file", "", "read the terms from this file instead")
	fs.StringVar(&s.TermsVersion, "terms-version", "", "version of the terms")
	fs.Var(&redirects, "redirect-uri", "exact redirect URI (repeat for several)")
	fs.StringVar(&s.LegalBasis, "legal-basis", "", "the law that allows more than 5 datasets")
	fs.BoolVar(&s.RequirePAR, "require-par", false, "accept authorization requests only when pushed by the SP connector (RFC 9126, FAPI 2.0)")
	fs.BoolVar(&s.CounterOTP, "counter-otp", false, "counter mode: send the citizen a one-time code at redemption, which they read to counter staff")
	if err := parseFlags(fs, args, append(required, "id", "name-zh", "name-en", "sp", "datasets", "purpose", "terms-version")...); err != nil {
		return s, err
	}
	if termsFile != "" {
		b, err := os.ReadFile(termsFile)
		if err != nil {
			return s, err
		}
		s.Terms = string(b)
	}
	if s.Terms == "" {
		return s, fmt.Errorf("%s: --terms or --terms-file is required", fs.Name())
	}
	var err error
	if s.SPOrg, s.SPConnector, err = splitPair("sp", sp); err != nil {
		return s, err
	}
	s.Modes = strings.Split(modes, ",")
	s.Datasets = strings.Split(datasets, ",")
	s.RedirectURIs = redirects
	return s, nil
}

func (a *adminCtx) serviceList(ctx context.Context) error {
	var ss []hubapi.Service
	if err := a.client.Do(ctx, http.MethodGet, hubapi.PathServices, nil, &ss); err != nil {
		return err
	}
	return a.print(ss, func(w *table) {
		fmt.Fprintln(w, "ID\tSP\tMODES\tDATASETS\tTERMS\tSTAGE\tSTATUS\tNAME (EN)")
		for _, s := range ss {
			fmt.Fprintf(w, "%s\t%s/%s\t%s\t%s\tv%s\t%s\t%s\t%s\n", s.ID, s.SPOrg, s.SPConnector, strings.Join(s.Modes, ","), strings.Join(s.Datasets, ","), s.TermsVersion,
				hubapi.StageOf(s.Stage), s.Status, s.NameEn)
		}
	})
}
