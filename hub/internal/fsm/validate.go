package fsm

import (
	"errors"
	"fmt"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Dataset is a dataset as the log records it. It has the JSON form hubapi.Dataset had when it was the
// payload, so that logs written then still decode; the API's type may change on its own from now on.
type Dataset struct {
	ID          string   `json:"id"`
	NameZh      string   `json:"name_zh"`
	NameEn      string   `json:"name_en"`
	Description string   `json:"description"`
	DPOrg       string   `json:"dp_org"`
	DPConnector string   `json:"dp_connector"`
	MoreDP      []string `json:"more_dp_connectors,omitempty"`
	MinAAL      int      `json:"min_aal"`
	Methods     []string `json:"methods,omitempty"`
	ContentType string   `json:"content_type"`
	Async       bool     `json:"async"`
	Download    bool     `json:"download,omitempty"`
}

// DatasetFrom makes the payload form of an API dataset.
func DatasetFrom(d hubapi.Dataset) Dataset {
	return Dataset{ID: d.ID, NameZh: d.NameZh, NameEn: d.NameEn, Description: d.Description, DPOrg: d.DPOrg, DPConnector: d.DPConnector,
		MoreDP: d.MoreDPConnectors, MinAAL: d.MinAAL, Methods: d.Methods, ContentType: d.ContentType, Async: d.Async, Download: d.Download}
}

func (d Dataset) api() hubapi.Dataset {
	return hubapi.Dataset{ID: d.ID, NameZh: d.NameZh, NameEn: d.NameEn, Description: d.Description, DPOrg: d.DPOrg, DPConnector: d.DPConnector,
		MoreDPConnectors: d.MoreDP, MinAAL: d.MinAAL, Methods: d.Methods, ContentType: d.ContentType, Async: d.Async, Download: d.Download}
}

// Service is a service as the log records it (the JSON form hubapi.Service had as the payload).
type Service struct {
	ID           string   `json:"id"`
	NameZh       string   `json:"name_zh"`
	NameEn       string   `json:"name_en"`
	SPOrg        string   `json:"sp_org"`
	SPConnector  string   `json:"sp_connector"`
	Modes        []string `json:"modes"`
	Datasets     []string `json:"datasets"`
	Purpose      string   `json:"purpose"`
	Terms        string   `json:"terms"`
	TermsVersion string   `json:"terms_version"`
	RedirectURIs []string `json:"redirect_uris"`
	LegalBasis   string   `json:"legal_basis,omitempty"`
	RequirePAR   bool     `json:"require_par,omitempty"`
	CounterOTP   bool     `json:"counter_otp,omitempty"`
}

// ServiceFrom makes the payload form of an API service.
func ServiceFrom(s hubapi.Service) Service {
	return Service{ID: s.ID, NameZh: s.NameZh, NameEn: s.NameEn, SPOrg: s.SPOrg, SPConnector: s.SPConnector, Modes: s.Modes, Datasets: s.Datasets,
		Purpose: s.Purpose, Terms: s.Terms, TermsVersion: s.TermsVersion, RedirectURIs: s.RedirectURIs, LegalBasis: s.LegalBasis, RequirePAR: s.RequirePAR,
		CounterOTP: s.CounterOTP}
}

func (s Service) api() hubapi.Service {
	return hubapi.Service{ID: s.ID, NameZh: s.NameZh, NameEn: s.NameEn, SPOrg: s.SPOrg, SPConnector: s.SPConnector, Modes: s.Modes, Datasets: s.Datasets,
		Purpose: s.Purpose, Terms: s.Terms, TermsVersion: s.TermsVersion, RedirectURIs: s.RedirectURIs, LegalBasis: s.LegalBasis, RequirePAR: s.RequirePAR,
		CounterOTP: s.CounterOTP}
}

// HubKeyRecord is a hub public key as the log records it (the JSON form of hubapi.HubKey then).
type HubKeyRecord struct {
	KID       string    `json:"kid"`
	Node      string    `json:"node"`
	Kind      string    `json:"kind"`
	KEM       uint16    `json:"kem,omitempty"`
	PublicKey []byte    `json:"public_key"`
	CreatedAt time.Time `json:"created_at"`
}

// HubKeyFrom makes the payload form of an API hub key.
func HubKeyFrom(k hubapi.HubKey) HubKeyRecord {
	return HubKeyRecord{KID: k.KID, Node: k.Node, Kind: k.Kind, KEM: k.KEM, PublicKey: k.PublicKey, CreatedAt: k.CreatedAt}
}

func (c *OrgAdd) Validate() error {
	o := hubapi.Org{Code: c.Code, NameZh: c.NameZh, NameEn: c.NameEn, Type: c.Type}
	if err := o.Validate(); err != nil {
		return err
	}
	return ValidContactEmail(c.ContactEmail)
}

func (c *ConnectorAdd) Validate() error {
	conn := hubapi.Connector{Org: c.Org, Name: c.Name, Roles: c.Roles, Address: c.Address, TCPAddress: c.TCPAddress}
	return conn.Validate()
}

func (c *ConnectorStatus) Validate() error { return validConnectorStatus(c.Status) }

func (c *ConnectorAddress) Validate() error {
	conn := hubapi.Connector{Org: c.Org, Name: c.Name, Roles: []string{hubapi.RoleDP}, Address: c.Address, TCPAddress: c.TCPAddress}
	return conn.Validate()
}

func validConnectorStatus(s string) error {
	switch s {
	case hubapi.StatusActive, hubapi.StatusSuspended, hubapi.StatusRevoked:
		return nil
	}
	return fmt.Errorf("status: %q is not active, suspended or revoked", s)
}

func (c *TokenCreate) Validate() error {
	if c.Hash == "" || c.Org == "" || c.Connector == "" {
		return errors.New("token: hash, org and connector are required")
	}
	if !c.ExpiresAt.After(c.Now) {
		return errors.New("ttl: the token would expire at once")
	}
	return nil
}

func (c *Enroll) Validate() error {
	if c.TokenHash == "" {
		return errors.New("enroll: token hash required")
	}
	return c.Cert.Validate()
}

func (c *CertRecord) Validate() error {
	if c.Serial == "" || c.SPIFFEID == "" || c.Kind == "" {
		return errors.New("certificate: serial, SPIFFE ID and kind are required")
	}
	return nil
}

func (c *TokenPurge) Validate() error { return nil }

func (c *Renew) Validate() error {
	if c.Org == "" || c.Name == "" {
		return errors.New("renew: org and name are required")
	}
	return c.Cert.Validate()
}

// Validate also fills in the defaults the API's validation sets (the content type).
func (c *DatasetAdd) Validate() error {
	d := c.Dataset.api()
	if err := d.Validate(); err != nil {
		return err
	}
	c.Dataset = DatasetFrom(d)
	return nil
}

func (c *DatasetStatus) Validate() error { return validDatasetStatus(c.Status) }

func (c *DatasetConnectors) Validate() error {
	if len(c.Connectors) == 0 {
		return errors.New("dp_connectors: at least one connector is required")
	}
	if err := fedid.ValidName(c.Connectors[0]); err != nil {
		return fmt.Errorf("dp_connectors[0]: %w", err)
	}
	if err := hubapi.ValidDPConnectors(c.Connectors[0], c.Connectors[1:]); err != nil {
		return fmt.Errorf("dp_connectors: %w", err)
	}
	return nil
}

func validDatasetStatus(s string) error {
	if s != hubapi.DatasetActive && s != hubapi.DatasetMaintenance {
		return fmt.Errorf("status: %q is not active or maintenance", s)
	}
	return nil
}

// Validate also fills in the defaults the API's validation sets.
func (c *ServiceAdd) Validate() error {
	s := c.Service.api()
	if err := s.Validate(); err != nil {
		return err
	}
	c.Service = ServiceFrom(s)
	return nil
}

func (c *ConnectorKey) Validate() error {
	if c.KEM == 0 || len(c.Key) == 0 || len(c.Key) > 4096 {
		return errors.New("key: a KEM and a public key of at most 4096 bytes are required")
	}
	return nil
}

func (c *HubKey) Validate() error {
	k := c.Key
	if k.KID == "" || k.Node == "" || len(k.PublicKey) == 0 || (k.Kind != hubapi.HubKeyTicket && k.Kind != hubapi.HubKeyHPKE) {
		return errors.New("hub key: kid, node, kind and public key are required")
	}
	return nil
}

func (c *ConsentCreate) Validate() error { return checkConsent(c.Consent).Err() }

func (c *ConsentDecide) Validate() error {
	if c.ID == "" || c.Subject == "" {
		return errors.New("consent decision: id and subject are required")
	}
	return nil
}

func (c *ConsentRecord) Validate() error {
	if err := checkConsent(c.Consent).Err(); err != nil {
		return err
	}
	if c.Approve && (c.CodeHash == "" || !c.CodeExpiresAt.After(c.Now)) {
		return fmt.Errorf("consent %s: approval needs a code", c.Consent.ID)
	}
	return nil
}

func (c *ConsentUse) Validate() error {
	if c.ID == "" {
		return errors.New("consent use: id required")
	}
	return nil
}

func (c *ConsentRevoke) Validate() error {
	if c.ID == "" || c.Subject == "" {
		return errors.New("consent revocation: id and subject are required")
	}
	return nil
}

func (c *ReceiptAdd) Validate() error { return CheckReceipt(c.Receipt) }

func (c *ReceiptsAdd) Validate() error {
	if len(c.Receipts) == 0 {
		return errors.New("receipts: at least one")
	}
	for i, r := range c.Receipts {
		if err := CheckReceipt(r); err != nil {
			return fmt.Errorf("receipts[%d]: %w", i, err)
		}
	}
	return nil
}
