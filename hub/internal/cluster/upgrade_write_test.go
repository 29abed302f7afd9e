//go:build upgradefixture

package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// TestWriteUpgradeFixture writes testdata/upgrade-v1 (only built with -tags upgradefixture: it overwrites
// the fixture, which must stay as the earlier release wrote it) with this release's commands: every command type,
// accepted and refused ones, a snapshot half-way. Run it only to add a new fixture for a new release.
func TestWriteUpgradeFixture(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	far := time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := fsm.Dataset{ID: "moi.household", NameZh: "戶籍資料", NameEn: "Household registration", Description: "戶籍 household",
		DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}
	ds2 := fsm.Dataset{ID: "fia.income", NameZh: "所得資料", NameEn: "Income", Description: "所得 income",
		DPOrg: "fia", DPConnector: "dp1", MinAAL: 3, ContentType: "text/csv", Async: true}
	svc := fsm.Service{ID: "bank.loan", NameZh: "貸款", NameEn: "Loan", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
		Datasets: []string{"moi.household", "fia.income"}, Purpose: "loan review", Terms: "terms", TermsVersion: "v1",
		RedirectURIs: []string{"https://bank.example/cb"}}
	consent := func(id, subject string, m int) fsm.Consent {
		return fsm.Consent{ID: id, Service: "bank.loan", Subject: subject, Datasets: []string{"moi.household", "fia.income"}, TermsVersion: "v1",
			AAL: 3, LoginMethod: "moica", RedirectURI: "https://bank.example/cb", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			OAuthState: "st-" + id, CreatedAt: at(m), ExpiresAt: at(m + 10)}
	}
	receipt := func(tid, role, cid, ds, outcome string, m int) fsm.Receipt {
		return fsm.Receipt{TicketID: tid, Role: role, ConsentID: cid, Dataset: ds, Reporter: "spiffe://mydata.test/org/x/connector/y",
			Counterpart: "spiffe://mydata.test/org/z/connector/w", Outcome: outcome, Bytes: 1234, At: at(m), RecordedAt: at(m)}
	}
	cmds := []fsm.Command{
		&fsm.OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", Now: at(0)},
		&fsm.OrgAdd{Code: "fia", NameZh: "財政部財政資訊中心", NameEn: "Fiscal Information Agency", Type: "central-agency", Now: at(0)},
		&fsm.OrgAdd{Code: "bank", NameZh: "範例銀行", NameEn: "Sample Bank", Type: "financial-institution", Now: at(0)},
		&fsm.OrgAdd{Code: "moi", NameZh: "dup", NameEn: "dup", Type: "other", Now: at(0)}, // refused: exists
		&fsm.ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: at(1)},
		&fsm.ConnectorAdd{Org: "fia", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7002", Now: at(1)},
		&fsm.ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7003", Now: at(1)},
		&fsm.ConnectorAdd{Org: "bank", Name: "old", Roles: []string{"dp", "sp"}, Address: "127.0.0.1:7004", Now: at(1)},
		&fsm.TokenCreate{Hash: "tok-used", Org: "moi", Connector: "dp1", ExpiresAt: far, Now: at(2)},
		&fsm.TokenCreate{Hash: "tok-live", Org: "fia", Connector: "dp1", ExpiresAt: far, Now: at(2)},
		&fsm.TokenCreate{Hash: "tok-expired", Org: "bank", Connector: "sp1", ExpiresAt: at(3), Now: at(2)},
		&fsm.Enroll{TokenHash: "tok-used", Cert: fsm.CertRecord{Serial: "a1", SPIFFEID: "spiffe://mydata.test/org/moi/connector/dp1", Kind: "enroll", NotBefore: at(2), NotAfter: at(2 + 1440), Now: at(2)}},
		&fsm.Enroll{TokenHash: "tok-used", Cert: fsm.CertRecord{Serial: "a2", Now: at(2)}}, // refused: used
		&fsm.CertRecord{Serial: "a3", SPIFFEID: "spiffe://mydata.test/org/moi/connector/dp1", Kind: "renew", NotBefore: at(3), NotAfter: at(3 + 1440), Now: at(3)},
		&fsm.TokenPurge{Now: at(4)},
		&fsm.ConnectorStatus{Org: "bank", Name: "old", Status: "suspended", Now: at(4)},
		&fsm.ConnectorStatus{Org: "bank", Name: "old", Status: "revoked", Now: at(5)},
		&fsm.ConnectorKey{Org: "moi", Name: "dp1", KEM: 0x647a, Key: []byte("moi-dp1-public-key"), Now: at(5)},
		&fsm.ConnectorKey{Org: "fia", Name: "dp1", KEM: 0x647a, Key: []byte("fia-dp1-public-key"), Now: at(5)},
		&fsm.ConnectorKey{Org: "bank", Name: "sp1", KEM: 0x647a, Key: []byte("bank-sp1-public-key"), Now: at(5)},
		&fsm.HubKey{Key: fsm.HubKeyRecord{KID: "tk1", Node: "hub-1", Kind: hubapi.HubKeyTicket, PublicKey: []byte("ticket-public"), CreatedAt: at(0)}},
		&fsm.HubKey{Key: fsm.HubKeyRecord{KID: "hk1", Node: "hub-1", Kind: hubapi.HubKeyHPKE, KEM: 0x647a, PublicKey: []byte("hpke-public"), CreatedAt: at(0)}},
		&fsm.DatasetAdd{Dataset: ds, Now: at(6)},
		&fsm.DatasetAdd{Dataset: ds2, Now: at(6)},
		&fsm.DatasetStatus{ID: "fia.income", Status: "maintenance", Now: at(7)},
		&fsm.DatasetStatus{ID: "fia.income", Status: "active", Now: at(8)},
		&fsm.ServiceAdd{Service: svc, Now: at(9)},
		// Consents the old way: created pending, then decided.
		&fsm.ConsentCreate{Consent: consent("c-old-granted", "A123456789", 10)},
		&fsm.ConsentDecide{ID: "c-old-granted", Subject: "A123456789", Approve: true, CodeHash: "code-old-granted", CodeExpiresAt: at(12), Now: at(11)},
		&fsm.ConsentUse{ID: "c-old-granted", Now: at(11)},
		&fsm.ConsentCreate{Consent: consent("c-old-denied", "A123456789", 10)},
		&fsm.ConsentDecide{ID: "c-old-denied", Subject: "A123456789", Approve: false, Now: at(11)},
		&fsm.ReceiptAdd{Receipt: receipt("t1", "dp", "c-old-granted", "moi.household", "delivered", 12)},
	}
	snapshotAfter := len(cmds)
	cmds = append(cmds,
		&fsm.ReceiptsAdd{Receipts: []fsm.Receipt{
			receipt("t1", "sp", "c-old-granted", "moi.household", "delivered", 12),
			receipt("t2", "dp", "c-old-granted", "fia.income", "pending", 12),
			receipt("t2", "dp", "c-old-granted", "fia.income", "delivered", 20),
			receipt("t2", "sp", "c-old-granted", "fia.income", "delivered", 20),
		}},
		// Consents the current way: one record of the decision.
		&fsm.ConsentRecord{Consent: consent("c-new-granted", "B223456787", 30), Approve: true, CodeHash: "code-new-granted", CodeExpiresAt: at(31), Now: at(30)},
		&fsm.ConsentRecord{Consent: consent("c-new-granted", "B223456787", 30), Approve: false, Now: at(30)}, // refused: decided
		&fsm.ConsentUse{ID: "c-new-granted", Now: at(30)},
		&fsm.ConsentUse{ID: "c-new-granted", Now: at(30)}, // refused: used
		&fsm.ConsentRecord{Consent: consent("c-new-revoked", "B223456787", 32), Approve: true, CodeHash: "code-new-revoked", CodeExpiresAt: at(33), Now: at(32)},
		&fsm.ConsentRevoke{ID: "c-new-revoked", Subject: "B223456787", Now: at(32)},
		&fsm.ConsentRecord{Consent: consent("c-new-denied", "B223456787", 34), Approve: false, Now: at(34)},
		&fsm.ReceiptsAdd{Receipts: []fsm.Receipt{receipt("t3", "dp", "c-new-granted", "moi.household", "no_record", 31)}},
	)
	writeUpgradeFixture(t, "upgrade-v1", cmds, snapshotAfter)
}

// writeUpgradeFixture runs cmds on a fresh one-node cluster, snapshotting after the first snapshotAfter of
// them, and keeps its raft directory and resulting state under testdata/name.
func writeUpgradeFixture(t *testing.T, name string, cmds []fsm.Command, snapshotAfter int) {
	n := newNode(t)
	c, f := n.mustStartLeader(t, nil)
	for i, cmd := range cmds {
		if err := c.Apply(cmd); err != nil {
			var fe *fsm.Error
			if !isFSMError(err, &fe) {
				t.Fatalf("command %d (%T): %v", i, cmd, err)
			}
		}
		if i+1 == snapshotAfter {
			if err := c.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := dumpState(t, f)
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join("testdata", name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	tarGz(t, n.dir, filepath.Join(out, "raft.tar.gz"))
	if err := os.WriteFile(filepath.Join(out, "state.json"), state, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tarGz(t *testing.T, dir, path string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := e.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = h.ModTime.Truncate(0), 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func isFSMError(err error, fe **fsm.Error) bool { return errors.As(err, fe) }
