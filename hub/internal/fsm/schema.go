package fsm

import (
	"database/sql"
	"fmt"
)

// schema is applied on open. Every statement is idempotent so that opening an existing database is safe.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orgs (
	code       TEXT PRIMARY KEY,
	name_zh    TEXT NOT NULL,
	name_en    TEXT NOT NULL,
	type       TEXT NOT NULL,
	status     TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connectors (
	org        TEXT NOT NULL REFERENCES orgs(code),
	name       TEXT NOT NULL,
	roles      TEXT NOT NULL,
	address    TEXT NOT NULL,
	tcp_address TEXT NOT NULL DEFAULT '', -- TLS over TCP, for peers whose UDP is blocked; '' for none
	status     TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	hpke_kem   INTEGER NOT NULL DEFAULT 0,
	hpke_key   BLOB,
	down       INTEGER NOT NULL DEFAULT 0, -- no hub node has heard from it for a while
	PRIMARY KEY (org, name)
);
CREATE TABLE IF NOT EXISTS join_tokens (
	hash       TEXT PRIMARY KEY,
	org        TEXT NOT NULL,
	connector  TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	FOREIGN KEY (org, connector) REFERENCES connectors(org, name)
);
CREATE TABLE IF NOT EXISTS certificates (
	serial     TEXT PRIMARY KEY,
	spiffe_id  TEXT NOT NULL,
	kind       TEXT NOT NULL,
	not_before INTEGER NOT NULL,
	not_after  INTEGER NOT NULL,
	issued_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_id ON certificates(spiffe_id, not_after);
CREATE TABLE IF NOT EXISTS hub_keys (
	kid        TEXT PRIMARY KEY,
	node       TEXT NOT NULL,
	kind       TEXT NOT NULL, -- ticket (ECDSA P-256, PKIX) or hpke (KEM public key)
	kem        INTEGER NOT NULL,
	public     BLOB NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
	id              TEXT PRIMARY KEY,
	service         TEXT NOT NULL,
	subject         TEXT NOT NULL,
	datasets        TEXT NOT NULL, -- JSON array of dataset ids
	terms_version   TEXT NOT NULL,
	aal             INTEGER NOT NULL,
	login_method    TEXT NOT NULL,
	redirect_uri    TEXT NOT NULL,
	code_challenge  TEXT NOT NULL,
	oauth_state     TEXT NOT NULL DEFAULT '',
	state           TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	expires_at      INTEGER NOT NULL,
	decided_at      INTEGER NOT NULL DEFAULT 0,
	used_at         INTEGER NOT NULL DEFAULT 0,
	code_hash       TEXT,
	code_expires_at INTEGER NOT NULL DEFAULT 0,
	subject_sealed  BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS consents_by_code ON consents(code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS consents_by_subject ON consents(subject, created_at);
CREATE TABLE IF NOT EXISTS receipts (
	ticket_id   TEXT NOT NULL,
	role        TEXT NOT NULL, -- dp or sp: who reported
	consent_id  TEXT NOT NULL REFERENCES consents(id),
	dataset     TEXT NOT NULL,
	reporter    TEXT NOT NULL, -- SPIFFE ID
	counterpart TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	bytes       INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	recorded_at INTEGER NOT NULL,
	PRIMARY KEY (ticket_id, role)
);
CREATE INDEX IF NOT EXISTS receipts_by_consent ON receipts(consent_id);
CREATE TABLE IF NOT EXISTS datasets (
	id           TEXT PRIMARY KEY,
	name_zh      TEXT NOT NULL,
	name_en      TEXT NOT NULL,
	description  TEXT NOT NULL,
	dp_org       TEXT NOT NULL,
	dp_connector TEXT NOT NULL,
	min_aal      INTEGER NOT NULL,
	methods      TEXT NOT NULL DEFAULT '',
	content_type TEXT NOT NULL,
	async        INTEGER NOT NULL,
	status       TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	download     INTEGER NOT NULL DEFAULT 0, -- citizens may download it themselves
	more_dp      TEXT NOT NULL DEFAULT '',   -- further connectors of dp_org that serve it, comma-separated
	FOREIGN KEY (dp_org, dp_connector) REFERENCES connectors(org, name)
);
CREATE TABLE IF NOT EXISTS services (
	id            TEXT PRIMARY KEY,
	body          TEXT NOT NULL, -- the hubapi.Service as JSON: read whole, never queried by field
	sp_org        TEXT NOT NULL,
	sp_connector  TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	FOREIGN KEY (sp_org, sp_connector) REFERENCES connectors(org, name)
);
CREATE TABLE IF NOT EXISTS hub_nodes (
	id           TEXT PRIMARY KEY,
	raft_address TEXT NOT NULL,
	api_url      TEXT NOT NULL,
	status       TEXT NOT NULL, -- active or removed
	joined_at    INTEGER NOT NULL,
	removed_at   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node_tokens (
	hash       TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keyring (
	id         TEXT PRIMARY KEY,
	purpose    TEXT NOT NULL,
	sealed     BLOB NOT NULL, -- the key material, sealed under the cluster key-encryption key
	public     BLOB,
	kem        INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	retired_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS passkeys (
	id                 BLOB PRIMARY KEY,
	subject_hash       TEXT NOT NULL,
	subject_sealed     BLOB NOT NULL,
	user_handle        BLOB NOT NULL,
	name               TEXT NOT NULL,
	public_key         BLOB NOT NULL,
	attestation_type   TEXT NOT NULL,
	attestation_format TEXT NOT NULL,
	aaguid             BLOB,
	sign_count         INTEGER NOT NULL,
	backup_eligible    INTEGER NOT NULL,
	backup_state       INTEGER NOT NULL,
	transports         TEXT NOT NULL,
	created_at         INTEGER NOT NULL,
	last_used_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passkeys_by_subject ON passkeys(subject_hash);
CREATE TABLE IF NOT EXISTS otp_challenges (
	id           TEXT PRIMARY KEY,
	subject_hash TEXT NOT NULL,
	purpose      TEXT NOT NULL,
	channel      TEXT NOT NULL,
	code_hash    BLOB NOT NULL,
	tries        INTEGER NOT NULL,
	max_tries    INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	used         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS throttle (
	key          TEXT PRIMARY KEY,
	failures     INTEGER NOT NULL,
	window_start INTEGER NOT NULL,
	locked_until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
	subject_hash      TEXT PRIMARY KEY,
	email_sealed      BLOB,
	email_verified_at INTEGER NOT NULL,
	phone_sealed      BLOB,
	phone_verified_at INTEGER NOT NULL,
	lang              TEXT NOT NULL,
	notify_email      INTEGER NOT NULL,
	notify_sms        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS method_uses (
	subject_hash TEXT NOT NULL,
	method       TEXT NOT NULL,
	first_at     INTEGER NOT NULL,
	PRIMARY KEY (subject_hash, method)
);
CREATE TABLE IF NOT EXISTS operators (
	name       TEXT PRIMARY KEY,
	roles      TEXT NOT NULL, -- comma-separated: federation-admin, auditor, reviewer:<sector>, applicant:<org>
	acts_for   TEXT NOT NULL,
	status     TEXT NOT NULL, -- active or disabled
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS operator_tokens (
	hash       TEXT PRIMARY KEY,
	operator   TEXT NOT NULL REFERENCES operators(name),
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
-- The operator log, hash-chained (hub/internal/oplog); oplog_head is the chain's end, moved with each row.
CREATE TABLE IF NOT EXISTS oplog (
	seq       INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL,
	actor     TEXT NOT NULL,
	roles     TEXT NOT NULL, -- JSON array
	op        TEXT NOT NULL,
	params    TEXT NOT NULL, -- JSON object, never a secret
	outcome   TEXT NOT NULL,
	detail    TEXT NOT NULL,
	before    TEXT NOT NULL,
	after     TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS oplog_by_time ON oplog(at);
CREATE TABLE IF NOT EXISTS oplog_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
	id           TEXT PRIMARY KEY,
	subject_hash TEXT NOT NULL,
	kind         TEXT NOT NULL,
	channel      TEXT NOT NULL,
	ref          TEXT NOT NULL,
	state        TEXT NOT NULL,
	attempts     INTEGER NOT NULL,
	created_at   INTEGER NOT NULL,
	next_at      INTEGER NOT NULL,
	sent_at      INTEGER NOT NULL,
	last_error   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
-- The counter side of counter-mode consents (counter.go): the code only as a keyed hash, the agent sealed.
CREATE TABLE IF NOT EXISTS counter_codes (
	consent_id    TEXT PRIMARY KEY REFERENCES consents(id),
	code_hash     TEXT NOT NULL UNIQUE, -- keyring.CodeHash: "<lookup key id>:<hex HMAC>"
	agent_sealed  BLOB,                 -- the agent (national ID and name) sealed under the subject key
	otp_challenge TEXT NOT NULL DEFAULT '',
	terminal      TEXT NOT NULL DEFAULT '',
	redeemer      TEXT NOT NULL DEFAULT '' -- the SP connector's SPIFFE ID
);
CREATE TABLE IF NOT EXISTS applications (
	id           TEXT PRIMARY KEY,
	kind         TEXT NOT NULL, -- org, service or dataset
	target       TEXT NOT NULL, -- the organisation's code, the service's or the dataset's id
	org          TEXT NOT NULL, -- the applying organisation
	sector       TEXT NOT NULL, -- the supervising authority's, '' if none
	stage        TEXT NOT NULL,
	status       TEXT NOT NULL,
	submitted_by TEXT NOT NULL,
	submitted_at INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	body         TEXT NOT NULL -- the fsm.Application as JSON, its decisions included
);
CREATE INDEX IF NOT EXISTS applications_by_target ON applications(kind, target, status);
CREATE INDEX IF NOT EXISTS applications_by_status ON applications(status);
CREATE TABLE IF NOT EXISTS pilot_subjects (
	kind   TEXT NOT NULL, -- service or dataset
	target TEXT NOT NULL,
	hash   TEXT NOT NULL, -- a test subject's keyed lookup hash
	PRIMARY KEY (kind, target, hash)
);
CREATE TABLE IF NOT EXISTS calendar_years (
	year      INTEGER PRIMARY KEY,
	loaded_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calendar_days (
	date TEXT PRIMARY KEY, -- YYYY-MM-DD
	year INTEGER NOT NULL,
	kind TEXT NOT NULL, -- holiday (a weekday off) or workday (a weekend day worked)
	note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS oplog_anchor (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL, -- the last purged entry: the chain verifies from it
	hash TEXT NOT NULL
);
-- Connector HA: a ticket some of a dataset's connectors may serve is claimed here before it is served.
CREATE TABLE IF NOT EXISTS ticket_claims (
	ticket_id  TEXT PRIMARY KEY,
	dp         TEXT NOT NULL,
	spent      INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	claimed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_claims_expires ON ticket_claims(expires);
-- When a hub node last heard from each connector; kept apart from connectors, which lookups cache.
CREATE TABLE IF NOT EXISTS connector_seen (
	org       TEXT NOT NULL,
	name      TEXT NOT NULL,
	last_seen INTEGER NOT NULL,
	PRIMARY KEY (org, name)
);
`

// columnsAdded are columns later releases added to tables that earlier ones made: CREATE TABLE IF NOT
// EXISTS leaves an existing table as it was, so they are added on open. Snapshots of earlier releases are
// restored into the live database, which has them.
var columnsAdded = []struct{ table, column, decl string }{
	{"consents", "subject_sealed", "BLOB"},
	{"datasets", "methods", "TEXT NOT NULL DEFAULT ''"},
	{"consents", "mode", "TEXT NOT NULL DEFAULT ''"},
	{"datasets", "download", "INTEGER NOT NULL DEFAULT 0"},
	{"datasets", "stage", "TEXT NOT NULL DEFAULT ''"},
	{"applications", "effective_at", "INTEGER NOT NULL DEFAULT 0"},
	{"connectors", "tcp_address", "TEXT NOT NULL DEFAULT ''"},
	{"datasets", "more_dp", "TEXT NOT NULL DEFAULT ''"},
	{"connectors", "down", "INTEGER NOT NULL DEFAULT 0"},
	{"orgs", "contact_email", "TEXT NOT NULL DEFAULT ''"}, // where an organisation's applications' news goes
}

func migrate(db *sql.DB) error {
	// Tables a later release added are missing from an earlier release's snapshot too.
	if _, err := db.Exec(schema); err != nil {
		return err
	}
	for _, c := range columnsAdded {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.column).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := db.Exec(`ALTER TABLE ` + c.table + ` ADD COLUMN ` + c.column + ` ` + c.decl); err != nil {
				return fmt.Errorf("add %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	return nil
}

// Keys of the meta table.
const (
	metaApplied   = "applied_index"
	metaDirectory = "directory_version"
)
