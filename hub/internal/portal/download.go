package portal

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/strictjson"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Downloads (個人化資料下載): the citizen picks datasets they may download, confirms, and their browser makes
// an X25519 key pair whose private half it cannot even export. The hub records the download (single use)
// and issues one ticket per dataset with that key as recipient; the browser hands each ticket back to the
// relay endpoint, which presents it to the data provider's connector and streams the sealed answer on. The
// page (static/download.js) opens it, checks the provider's signature, and saves one zip package.

// maxDownloadDatasets bounds one download, as the five-dataset rule bounds a service's request.
const maxDownloadDatasets = 10

// downloadable are the active datasets citizens may download themselves.
func (s *Server) downloadable() ([]hubapi.Dataset, error) {
	all, err := s.cfg.State.Datasets()
	if err != nil {
		return nil, err
	}
	var out []hubapi.Dataset
	for _, d := range all {
		if d.Download && d.Status == hubapi.DatasetActive {
			out = append(out, d)
		}
	}
	return out, nil
}

// downloadSelection reads the datasets a page asks for: each downloadable, none twice, at least one.
func (s *Server) downloadSelection(ids []string) ([]hubapi.Dataset, bool, error) {
	if len(ids) == 0 || len(ids) > maxDownloadDatasets {
		return nil, false, nil
	}
	var out []hubapi.Dataset
	for _, id := range ids {
		d, err := s.cfg.State.Dataset(id)
		if err != nil {
			return nil, false, err
		}
		if d == nil || !d.Download || d.Status != hubapi.DatasetActive || slices.ContainsFunc(out, func(x hubapi.Dataset) bool { return x.ID == id }) {
			return nil, false, nil
		}
		out = append(out, *d)
	}
	return out, true, nil
}

func (s *Server) downloadList(w http.ResponseWriter, r *http.Request) {
	ds, err := s.downloadable()
	if err != nil {
		s.internalError(w, r, "list downloadable datasets", err)
		return
	}
	s.render(w, r, http.StatusOK, "download.html", "download.title", map[string]any{"Datasets": s.catalogueRows(r, ds), "Max": maxDownloadDatasets})
}

// downloadLoginContext is the login page's context for a download's confirmation page: the datasets'
// levels and methods decide what login suffices.
func (s *Server) downloadLoginContext(q url.Values) loginContext {
	var lc loginContext
	ds, ok, err := s.downloadSelection(q["ds"])
	if err != nil || !ok {
		return lc
	}
	lc.Datasets, lc.Reqs = ds, requirementsOf(ds)
	return lc
}

// downloadObject is what a confirmation page's CSRF token is bound to: the download's id and datasets.
func downloadObject(pending string, ids []string) string {
	return "download:" + pending + ":" + strings.Join(ids, ",")
}

func (s *Server) downloadConfirm(w http.ResponseWriter, r *http.Request) {
	ids := r.URL.Query()["ds"]
	ds, ok, err := s.downloadSelection(ids)
	if err != nil {
		s.internalError(w, r, "read a download's datasets", err)
		return
	}
	if !ok {
		s.errorPage(w, r, http.StatusBadRequest, "download.pick.title", message("download.pick", maxDownloadDatasets))
		return
	}
	sess := sessionOf(r)
	if sess == nil || !identity.Met(sess.Method, sess.Level, requirementsOf(ds)...) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/download/confirm?"+url.Values{"ds": ids}.Encode()), http.StatusSeeOther)
		return
	}
	rows := s.catalogueRows(r, ds)
	pending := randomID(16)
	s.render(w, r, http.StatusOK, "download_confirm.html", "download.confirm.title", map[string]any{
		"Datasets": rows, "Pending": pending, "IDs": strings.Join(ids, ","), "CSRF": s.csrf(r, downloadObject(pending, ids)),
		"RelayCSRF": s.csrf(r, "download-relay"),
	})
}

// downloadStartRequest is what the confirmation page's script posts.
type downloadStartRequest struct {
	Pending  string   `json:"pending"`
	Datasets []string `json:"datasets"`
	// PublicKey is the browser's X25519 public key, base64url without padding.
	PublicKey string `json:"public_key"`
}

type downloadItem struct {
	Dataset string `json:"dataset"`
	Name    string `json:"name"`
	Holder  string `json:"holder"`
	DP      string `json:"dp"`
	// DPs are every connector that may serve the ticket (connector HA): the one that answered signs.
	DPs         []string  `json:"dps"`
	Ticket      string    `json:"ticket"`
	TicketID    string    `json:"ticket_id"`
	ContentType string    `json:"content_type"`
	Async       bool      `json:"async"`
	ExpiresAt   time.Time `json:"expires_at"`
}

type downloadUnavailable struct {
	Dataset string `json:"dataset"`
	Name    string `json:"name"`
	Reason  string `json:"reason"`
}

type downloadStartResponse struct {
	ConsentID   string                `json:"consent_id"`
	Items       []downloadItem        `json:"items"`
	Unavailable []downloadUnavailable `json:"unavailable,omitempty"`
}

func (s *Server) downloadStart(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		s.jsonError(w, r, http.StatusUnauthorized, message("error.session.text"))
		return
	}
	var req downloadStartRequest
	if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, 8<<10), 8<<10, &req); err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("error.form"))
		return
	}
	if !counterConsentID.MatchString(req.Pending) || !s.checkScriptCSRF(r, downloadObject(req.Pending, req.Datasets)) {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	key, err := base64.RawURLEncoding.DecodeString(req.PublicKey)
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("download.key"))
		return
	}
	ds, ok, err := s.downloadSelection(req.Datasets)
	if err != nil {
		s.internalError(w, r, "read a download's datasets", err)
		return
	}
	if !ok {
		s.jsonError(w, r, http.StatusConflict, message("download.gone"))
		return
	}
	// The datasets' requirements may have risen since the page was shown.
	if !identity.Met(sess.Method, sess.Level, requirementsOf(ds)...) {
		s.jsonError(w, r, http.StatusForbidden, message("consent.level"))
		return
	}
	now := s.now()
	c := fsm.Consent{ID: req.Pending, Subject: sess.Subject, Datasets: req.Datasets, AAL: sess.Level, LoginMethod: sess.Method, CreatedAt: now}
	resp, err := s.cfg.Consent.IssueDownload(c, key, now)
	var de *consent.DownloadError
	var fe *fsm.Error
	switch {
	case errors.As(err, &de):
		s.jsonError(w, r, de.Status, message("download.key"))
		return
	case errors.As(err, &fe):
		s.jsonError(w, r, http.StatusConflict, message("download.used"))
		return
	case err != nil:
		s.log.Error("record a download", "err", err)
		w.Header().Set("Retry-After", "2")
		s.jsonError(w, r, http.StatusServiceUnavailable, message("consent.unavailable"))
		return
	}
	s.metrics.decisions.WithLabelValues("download").Inc()
	lang := requestLang(r)
	names := map[string]hubapi.Dataset{}
	for _, d := range ds {
		names[d.ID] = d
	}
	out := downloadStartResponse{ConsentID: resp.ConsentID, Items: []downloadItem{}}
	for _, t := range resp.Tickets {
		d := names[t.Dataset]
		out.Items = append(out.Items, downloadItem{Dataset: t.Dataset, Name: pickLang(lang, d.NameZh, d.NameEn), Holder: s.orgName(r, d.DPOrg), DP: t.DP, DPs: ticketDPs(t),
			Ticket: t.Ticket, TicketID: t.TicketID, ContentType: t.ContentType, Async: t.Async, ExpiresAt: t.ExpiresAt})
	}
	for _, u := range resp.Unavailable {
		d := names[u.Dataset]
		out.Unavailable = append(out.Unavailable, downloadUnavailable{Dataset: u.Dataset, Name: pickLang(lang, d.NameZh, d.NameEn), Reason: tr(lang, "download.unavailable")})
	}
	w.Header().Set("Cache-Control", "no-store")
	jsonReply(w, http.StatusOK, out)
}

// ticketDPs are the connectors that may serve t, its dp first.
func ticketDPs(t hubapi.RedeemedTicket) []string {
	out := []string{t.DP}
	for _, a := range t.Alternates {
		out = append(out, a.DP)
	}
	return out
}

// ownDownload says whether consentID is a download of the session's citizen.
func (s *Server) ownDownload(subject, consentID string) (*fsm.Consent, error) {
	k, err := s.cfg.State.Consent(consentID)
	if err != nil || k == nil || k.Mode != hubapi.ModeDownload {
		return nil, err
	}
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(hashes, k.Subject) {
		return nil, nil
	}
	return k, nil
}

// downloadRelay presents one download ticket to its data provider and streams the answer, frame for
// frame as the provider sent it, to the browser: the header (status and manifest) in clear, then content
// and trailer sealed to the browser's key. Nothing of it is kept.
func (s *Server) downloadRelay(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		s.jsonError(w, r, http.StatusUnauthorized, message("error.session.text"))
		return
	}
	if !s.checkScriptCSRF(r, "download-relay") {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	if s.cfg.Relay == nil {
		s.jsonError(w, r, http.StatusServiceUnavailable, message("consent.unavailable"))
		return
	}
	var req struct {
		Ticket string `json:"ticket"`
	}
	if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, 16<<10), 16<<10, &req); err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("error.form"))
		return
	}
	claims, err := s.cfg.Relay.Check(req.Ticket)
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("download.ticket"))
		return
	}
	if k, err := s.ownDownload(sess.Subject, claims.ConsentID); err != nil {
		s.internalError(w, r, "read a download", err)
		return
	} else if k == nil {
		s.jsonError(w, r, http.StatusForbidden, message("download.not_yours"))
		return
	}
	ans, err := s.cfg.Relay.Open(r.Context(), req.Ticket, claims)
	if err != nil {
		s.log.Warn("relay a download", "ticket", claims.ID, "dataset", claims.Dataset, "err", err)
		w.Header().Set("Retry-After", "30")
		s.jsonError(w, r, http.StatusBadGateway, message("download.unreachable"))
		return
	}
	defer ans.Close()
	if ans.Header.Status == transfer.NotReady {
		ready := s.now().Add(time.Duration(ans.Header.RetryAfter) * time.Second)
		if err := s.cfg.Consent.DownloadPending(claims.ConsentID, claims.Dataset, ready, s.now()); err != nil {
			s.log.Warn("queue a ready notice", "consent", claims.ConsentID, "err", err)
		}
	}
	w.Header().Set("Content-Type", "application/vnd.mydata.transfer")
	// Which of the ticket's connectors answered: the page checks the signature is that one's.
	w.Header().Set("X-MyData-DP", ans.DP)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(ans.HeaderFrame); err != nil {
		return
	}
	rc := http.NewResponseController(w)
	if _, err := ans.CopyTo(w, rc.Flush); err != nil {
		// A cut stream never looks complete to the page: the trailer is missing, and the last sealed chunk
		// is not the final one. Ending the response abruptly says so to the browser too.
		s.log.Warn("relay a download: stream cut", "ticket", claims.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// downloadSigner checks, for the page, the certificate chain a data provider signed a delivery with: it must
// lead to the federation's root and name the connector the ticket named. Certificates are public; the
// page checks the signature itself with the leaf's key.
func (s *Server) downloadSigner(w http.ResponseWriter, r *http.Request) {
	if sessionOf(r) == nil {
		s.jsonError(w, r, http.StatusUnauthorized, message("error.session.text"))
		return
	}
	if !s.checkScriptCSRF(r, "download-relay") {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	var req struct {
		DP    string   `json:"dp"`
		Chain [][]byte `json:"chain"`
	}
	if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, 32<<10), 32<<10, &req); err != nil || len(req.Chain) == 0 || len(req.Chain) > 8 {
		s.jsonError(w, r, http.StatusBadRequest, message("error.form"))
		return
	}
	if s.cfg.Bundle == nil {
		s.jsonError(w, r, http.StatusServiceUnavailable, message("consent.unavailable"))
		return
	}
	id, chains, err := x509svid.ParseAndVerify(req.Chain, s.cfg.Bundle)
	if err == nil {
		err = fedid.CheckChain(id.TrustDomain(), id, chains)
	}
	if err == nil && id.String() != req.DP {
		err = fmt.Errorf("signed by %s, not %s", id, req.DP)
	}
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		jsonReply(w, http.StatusUnprocessableEntity, map[string]string{"error": tr(requestLang(r), "download.signer"), "detail": err.Error()})
		return
	}
	jsonReply(w, http.StatusOK, map[string]string{"signer": id.String()})
}

// downloadIDPattern is what a download's id looks like (randomID(16)).
var downloadIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// downloadPage is a download's own page, from the history: the browser that made it keeps its key and
// tickets, and fetches what was not ready before.
func (s *Server) downloadPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/download/"+id), http.StatusSeeOther)
		return
	}
	if !downloadIDPattern.MatchString(id) {
		s.errorPage(w, r, http.StatusNotFound, "download.none.title", message("download.none"))
		return
	}
	k, err := s.ownDownload(sess.Subject, id)
	if err != nil {
		s.internalError(w, r, "read a download", err)
		return
	}
	if k == nil {
		s.errorPage(w, r, http.StatusNotFound, "download.none.title", message("download.none"))
		return
	}
	rows := make([]catalogueRow, 0, len(k.Datasets))
	for _, id := range k.Datasets {
		if d, err := s.cfg.State.Dataset(id); err == nil && d != nil {
			rows = append(rows, catalogueRow{Dataset: *d, Holder: s.orgName(r, d.DPOrg)})
		}
	}
	s.render(w, r, http.StatusOK, "download_fetch.html", "download.fetch.title", map[string]any{
		"Consent": k, "Datasets": rows, "RelayCSRF": s.csrf(r, "download-relay"), "Zone": s.cfg.Location.String(),
	})
}

// downloadRow completes a history row of a download: no service, and the citizen is the recipient.
func (s *Server) downloadRow(r *http.Request, row *historyRow) {
	if row.Mode != hubapi.ModeDownload {
		return
	}
	lang := requestLang(r)
	row.ModeKey, row.Download = "mode.download", true
	row.ServiceName, row.Recipient = tr(lang, "download.history.name"), tr(lang, "download.history.recipient")
	row.StateKey = "state.downloaded"
}
