package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
)

// datasetNames are the datasets the bank asks for, in the applicant's words.
var datasetNames = map[string][2]string{
	"moi.household": {"戶籍資料", "Household registration (Ministry of the Interior)"},
	"fia.income":    {"個人所得資料", "Income (Fiscal Information Agency)"},
	"fia.property":  {"個人財產資料", "Property (Fiscal Information Agency)"},
}

func datasetName(id string) string {
	if n, ok := datasetNames[id]; ok {
		return n[0] + " " + n[1]
	}
	return id
}

// statusText words a dataset's status for the applicant.
var statusText = map[string]string{
	"fetching":    "取得中 Fetching…",
	"delivered":   "已取得 Delivered",
	"no_record":   "查無資料 No record",
	"pending":     "資料準備中，自動重試 Retrying",
	"unavailable": "暫停提供 Unavailable",
	"failed":      "失敗 Failed",
}

// labels name the fields of the three datasets; other keys are shown as they are.
var labels = map[string]string{
	"household_no":   "戶號 Household no.",
	"address":        "地址 Address",
	"address_en":     "英譯地址 Address in English",
	"household_head": "戶長 Head of household",
	"members":        "戶內人口 Members",
	"name":           "姓名 Name",
	"national_id":    "身分證字號 National ID",
	"relation":       "稱謂 Relation",
	"sex":            "性別 Sex",
	"birth_date":     "出生日期 Date of birth",
	"taxpayer":       "納稅義務人 Taxpayer",
	"currency":       "幣別 Currency",
	"years":          "各年度所得 Income by year",
	"year":           "年度 Year",
	"total":          "合計 Total",
	"items":          "所得明細 Items",
	"category":       "所得類別 Category",
	"payer":          "給付單位 Payer",
	"amount":         "金額 Amount",
	"kind":           "類別 Kind",
	"item":           "標的 Item",
	"location":       "所在 Location",
	"area_m2":        "面積 Area (m²)",
	"share":          "持分 Share",
	"assessed_value": "現值 Assessed value",
}

func label(key string) string {
	if l, ok := labels[key]; ok {
		return l
	}
	return strings.ReplaceAll(key, "_", " ")
}

// appView is an application page.
type appView struct {
	ID          string
	Name        string
	ConsentID   string
	AAL         int
	LoginMethod string
	Created     time.Time
	InProgress  bool
	Refresh     int
	// Complete is true when every dataset has its final answer: delivered, or no record.
	Complete bool
	Datasets []datasetView
}

type datasetView struct {
	ID          string
	NameZh      string
	NameEn      string
	Status      string
	StatusText  string
	Reason      string
	RetryAfter  int
	ContentType string
	Size        int64
	SHA256      string
	Verified    bool
	Data        *node  // the content as tables, when it is JSON
	Note        string // why the content is not shown as a table
}

func buildView(ex *exchange, name string) appView {
	v := appView{ID: ex.ID, Name: name, ConsentID: ex.ConsentID, AAL: ex.AAL, LoginMethod: ex.LoginMethod, Created: ex.Created,
		InProgress: ex.State != "complete", Complete: ex.State == "complete"}
	if v.InProgress {
		v.Refresh = refreshSeconds
	}
	for _, d := range ex.Datasets {
		dv := datasetView{ID: d.Dataset, NameZh: d.Dataset, Status: d.Status, StatusText: statusText[d.Status], Reason: d.Reason,
			RetryAfter: d.RetryAfter, ContentType: d.ContentType, Size: d.Size, SHA256: d.SHA256, Verified: d.Verified}
		if n, ok := datasetNames[d.Dataset]; ok {
			dv.NameZh, dv.NameEn = n[0], n[1]
		}
		if dv.StatusText == "" {
			dv.StatusText = d.Status
		}
		switch d.Status {
		case "delivered":
			dv.Data, dv.Note = contentView(d)
		case "no_record":
		default:
			v.Complete = false
		}
		v.Datasets = append(v.Datasets, dv)
	}
	return v
}

// contentView turns delivered JSON into tables.
func contentView(d exchangeDataset) (*node, string) {
	if mt, _, _ := mime.ParseMediaType(d.ContentType); mt != "application/json" {
		return nil, fmt.Sprintf("Received a %s file of %d bytes; this page shows JSON only.", d.ContentType, len(d.Content))
	}
	if len(d.Content) > maxContent {
		return nil, fmt.Sprintf("Received %d bytes of JSON, too much to show here.", len(d.Content))
	}
	v, err := parseJSON(d.Content)
	if err != nil {
		return nil, "The data received is not valid JSON: " + err.Error()
	}
	return toNode("", v), ""
}

// ---- JSON, in order -----------------------------------------------------------------------------------

// jsonValue is a parsed JSON value that keeps its object keys in order, as the agency wrote them.
type jsonValue struct {
	kind  byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	keys  []string
	vals  []*jsonValue // object values, in keys' order; array items
	text  string       // string, number or bool
	isInt bool
}

const maxDepth = 32

func parseJSON(data []byte) (*jsonValue, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the first value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (*jsonValue, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		v := &jsonValue{kind: 'a'}
		if t == '{' {
			v.kind = 'o'
		}
		for dec.More() {
			if v.kind == 'o' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, k.(string))
			}
			item, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			v.vals = append(v.vals, item)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return v, nil
	case string:
		return &jsonValue{kind: 's', text: t}, nil
	case json.Number:
		_, intErr := t.Int64()
		return &jsonValue{kind: 'n', text: t.String(), isInt: intErr == nil}, nil
	case bool:
		return &jsonValue{kind: 'b', text: fmt.Sprint(t)}, nil
	case nil:
		return &jsonValue{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func (v *jsonValue) get(key string) *jsonValue {
	for i, k := range v.keys {
		if k == key {
			return v.vals[i]
		}
	}
	return nil
}

// ---- tables -------------------------------------------------------------------------------------------

// node is what the templates draw: an object as a two-column table, an array of objects as a table with a
// column per key, an array of plain values as a list, and a plain value as text.
type node struct {
	Kind    string // object, table, list, text
	Text    string
	Num     bool
	Fields  []field
	Columns []string
	Rows    [][]*node
	Items   []*node
}

type field struct {
	Label string
	Value *node
}

// toNode draws v, the value of key (or "" for a top-level value or an array item).
func toNode(key string, v *jsonValue) *node {
	switch v.kind {
	case 'o':
		n := &node{Kind: "object"}
		for i, k := range v.keys {
			n.Fields = append(n.Fields, field{label(k), toNode(k, v.vals[i])})
		}
		return n
	case 'a':
		if len(v.vals) == 0 {
			return &node{Kind: "text", Text: "—"}
		}
		allObjects := true
		for _, item := range v.vals {
			allObjects = allObjects && item.kind == 'o'
		}
		if !allObjects {
			n := &node{Kind: "list"}
			for _, item := range v.vals {
				n.Items = append(n.Items, toNode(key, item))
			}
			return n
		}
		// One column per key, in the order keys first appear.
		var keys []string
		seen := map[string]bool{}
		for _, item := range v.vals {
			for _, k := range item.keys {
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
		n := &node{Kind: "table"}
		for _, k := range keys {
			n.Columns = append(n.Columns, label(k))
		}
		for _, item := range v.vals {
			row := make([]*node, len(keys))
			for i, k := range keys {
				if c := item.get(k); c != nil {
					row[i] = toNode(k, c)
				} else {
					row[i] = &node{Kind: "text", Text: "—"}
				}
			}
			n.Rows = append(n.Rows, row)
		}
		return n
	case 'n':
		text := v.text
		if v.isInt && !isYear(key) {
			text = groupThousands(text)
		}
		return &node{Kind: "text", Text: text, Num: true}
	case 'b':
		if v.text == "true" {
			return &node{Kind: "text", Text: "是 Yes"}
		}
		return &node{Kind: "text", Text: "否 No"}
	case 'z':
		return &node{Kind: "text", Text: "—"}
	}
	return &node{Kind: "text", Text: v.text}
}

// isYear says whether a key holds a year, which is written without a thousands separator.
func isYear(key string) bool {
	return key == "year" || strings.HasSuffix(key, "_year")
}

// groupThousands writes an integer with commas, as amounts are read: 1,450,000.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String()
}
