package counter

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"sort"
	"strings"
	"unicode/utf8"
)

// How a dataset shows: JSON as definition lists and tables, CSV as a table, PDF in a frame of its own
// same-origin URL, plain text as it is; anything else only by its type and size.
const (
	viewJSON  = "json"
	viewCSV   = "csv"
	viewPDF   = "pdf"
	viewText  = "text"
	viewOther = "other"
)

// Limits keep one odd dataset from making a page no one can read: past them the rest shows as text.
const (
	maxDepth   = 8
	maxCSVRows = 5000
)

// node is a JSON value laid out for the page. Exactly one of its parts is set.
type node struct {
	Text    string   // a scalar
	Null    bool     // JSON null: shown as a dash
	Entries []entry  // an object: a definition list
	Items   []*node  // an array of scalars or mixed values: a list
	Head    []string // an array of objects: a table with these columns
	Rows    [][]*node
	Pre     string // too deep: indented JSON
}

type entry struct {
	Key string
	Val *node
}

// table is a CSV dataset.
type table struct {
	Head      []string
	Rows      [][]string
	Truncated int // rows left out past maxCSVRows
}

// viewKind decides how a content type shows.
func viewKind(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return viewOther
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return viewJSON
	case mt == "text/csv":
		return viewCSV
	case mt == "application/pdf":
		return viewPDF
	case mt == "text/plain":
		return viewText
	}
	return viewOther
}

var errNotJSON = errors.New("not JSON")

// renderJSON lays a JSON document out. Numbers keep their digits as sent.
func renderJSON(b []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errNotJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotJSON
	}
	return jsonNode(v, 0), nil
}

func jsonNode(v any, depth int) *node {
	if depth >= maxDepth {
		b, _ := json.MarshalIndent(v, "", "  ")
		return &node{Pre: string(b)}
	}
	switch x := v.(type) {
	case nil:
		return &node{Null: true}
	case string:
		return &node{Text: x}
	case json.Number:
		return &node{Text: x.String()}
	case bool:
		if x {
			return &node{Text: "true"}
		}
		return &node{Text: "false"}
	case map[string]any:
		if len(x) == 0 {
			return &node{Null: true}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // Go's maps lose the sender's order; sorted at least stays put between views
		n := &node{Entries: []entry{}}
		for _, k := range keys {
			n.Entries = append(n.Entries, entry{k, jsonNode(x[k], depth+1)})
		}
		return n
	case []any:
		if len(x) == 0 {
			return &node{Null: true}
		}
		if head := objectColumns(x); head != nil {
			n := &node{Head: head}
			for _, item := range x {
				obj := item.(map[string]any)
				row := make([]*node, len(head))
				for i, k := range head {
					if val, ok := obj[k]; ok {
						row[i] = jsonNode(val, depth+1)
					} else {
						row[i] = &node{Null: true}
					}
				}
				n.Rows = append(n.Rows, row)
			}
			return n
		}
		n := &node{Items: []*node{}}
		for _, item := range x {
			n.Items = append(n.Items, jsonNode(item, depth+1))
		}
		return n
	}
	return &node{Null: true}
}

// objectColumns is the union of the keys of an array of objects, in first-seen order per object (sorted
// within each), or nil if the array is empty or holds anything but objects.
func objectColumns(items []any) []string {
	if len(items) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var head []string
	for _, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			if !seen[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			seen[k] = true
			head = append(head, k)
		}
	}
	if len(head) == 0 {
		return nil
	}
	return head
}

// renderCSV reads a CSV dataset: the first record is the header. Rows may have any number of fields; a
// UTF-8 byte order mark, which spreadsheet programs write, is dropped.
func renderCSV(b []byte) (*table, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8")
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	t := &table{}
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if first {
			t.Head = rec
			continue
		}
		if len(t.Rows) >= maxCSVRows {
			t.Truncated++
			continue
		}
		t.Rows = append(t.Rows, rec)
	}
	return t, nil
}
