package certlogin

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	oidSerialNumber                = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidSubjectDirectoryAttributes  = asn1.ObjectIdentifier{2, 5, 29, 9}
	errNoIDInCertificate           = errors.New("the certificate names no ID")
	errIDValueNotString            = errors.New("the ID value is not a UTF8String, PrintableString or IA5String")
	errSubjectDirectoryUnparseable = errors.New("the SubjectDirectoryAttributes extension does not parse")
)

type subjectRule struct {
	kind string
	oid  asn1.ObjectIdentifier
	sda  bool // ExtensionLast4 reads an attribute inside SubjectDirectoryAttributes
}

// parseSubjectRule returns errors that start with the sub-key, for New to prefix with "subject_rule.".
func parseSubjectRule(r SubjectRule) (subjectRule, error) {
	var out subjectRule
	switch r.Kind {
	case SubjectAttribute:
		out.kind = r.Kind
		out.oid = oidSerialNumber
		if r.Source != "" {
			return out, fmt.Errorf("source: only for kind %s", ExtensionLast4)
		}
	case ExtensionLast4:
		out.kind = r.Kind
		switch r.Source {
		case "", SourceExtension:
		case SourceSubjectDirectoryAttributes:
			out.sda = true
		default:
			return out, fmt.Errorf("source: %q is neither %s nor %s", r.Source, SourceExtension, SourceSubjectDirectoryAttributes)
		}
		if r.OID == "" {
			return out, fmt.Errorf("oid: required for kind %s", ExtensionLast4)
		}
	case "":
		return out, fmt.Errorf("kind: required, %s or %s", SubjectAttribute, ExtensionLast4)
	default:
		return out, fmt.Errorf("kind: %q is neither %s nor %s", r.Kind, SubjectAttribute, ExtensionLast4)
	}
	if r.OID != "" {
		oid, err := parseOID(r.OID)
		if err != nil {
			return out, fmt.Errorf("oid: %w", err)
		}
		out.oid = oid
	}
	return out, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || strings.HasPrefix(p, "+") {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return oid, nil
}

// match says whether cert belongs to the typed ID. Letters compare without case: a Taiwanese ID
// starts with one, and neither the citizen nor every CA is careful about it.
func (r subjectRule) match(cert *x509.Certificate, nationalID string) error {
	typed := strings.ToUpper(strings.TrimSpace(nationalID))
	if typed == "" {
		return fmt.Errorf("%w: no ID number was typed", ErrNotYours)
	}
	var got []string
	switch {
	case r.kind == SubjectAttribute:
		for _, n := range cert.Subject.Names {
			if n.Type.Equal(r.oid) {
				if s, ok := n.Value.(string); ok {
					got = append(got, strings.ToUpper(strings.TrimSpace(s)))
				}
			}
		}
	default:
		runes := []rune(typed)
		if len(runes) < 4 {
			return fmt.Errorf("%w: the typed ID is shorter than four characters", ErrNotYours)
		}
		typed = string(runes[len(runes)-4:])
		v, err := r.extensionValue(cert)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotYours, err)
		}
		got = append(got, strings.ToUpper(strings.TrimSpace(v)))
	}
	if len(got) == 0 {
		return fmt.Errorf("%w: %w (attribute %s)", ErrNotYours, errNoIDInCertificate, r.oid)
	}
	for _, g := range got {
		if subtle.ConstantTimeCompare([]byte(g), []byte(typed)) == 1 {
			return nil
		}
	}
	// The detail names no ID: errors end up in logs.
	return fmt.Errorf("%w: the certificate's %s differs from the typed ID", ErrNotYours, r.oid)
}

func (r subjectRule) extensionValue(cert *x509.Certificate) (string, error) {
	want := r.oid
	if r.sda {
		want = oidSubjectDirectoryAttributes
	}
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(want) {
			continue
		}
		if !r.sda {
			return decodeString(ext.Value)
		}
		// SubjectDirectoryAttributes ::= SEQUENCE SIZE (1..MAX) OF Attribute (RFC 5280 4.2.1.8)
		var attrs []struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		rest, err := asn1.Unmarshal(ext.Value, &attrs)
		if err != nil || len(rest) != 0 {
			return "", errSubjectDirectoryUnparseable
		}
		for _, a := range attrs {
			if a.Type.Equal(r.oid) && len(a.Values) > 0 {
				return decodeString(a.Values[0].FullBytes)
			}
		}
		return "", fmt.Errorf("%w (no attribute %s in SubjectDirectoryAttributes)", errNoIDInCertificate, r.oid)
	}
	return "", fmt.Errorf("%w (no extension %s)", errNoIDInCertificate, want)
}

func decodeString(der []byte) (string, error) {
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(der, &rv)
	if err != nil || len(rest) != 0 || rv.Class != asn1.ClassUniversal || rv.IsCompound {
		return "", errIDValueNotString
	}
	switch rv.Tag {
	case asn1.TagUTF8String:
		if !utf8.Valid(rv.Bytes) {
			return "", errIDValueNotString
		}
	case asn1.TagPrintableString, asn1.TagIA5String:
		for _, b := range rv.Bytes {
			if b >= 0x80 {
				return "", errIDValueNotString
			}
		}
	default:
		return "", errIDValueNotString
	}
	return string(rv.Bytes), nil
}
