package portal

import (
	"encoding/base64"
	"fmt"
	"html/template"
	"strings"

	qrcode "github.com/yeqown/go-qrcode/v2"
)

// qrQuiet is the quiet zone around a QR code, in modules, as ISO/IEC 18004 asks.
const qrQuiet = 4

// qrSVG renders text as a QR code (error correction M) in SVG, one square per dark module: the code is
// drawn by the hub, so the page needs no script, and a data: URL needs no second request.
func qrSVG(text string) (string, error) {
	q, err := qrcode.NewWith(text, qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium))
	if err != nil {
		return "", fmt.Errorf("qr code: %w", err)
	}
	var m matrixWriter
	if err := q.Save(&m); err != nil {
		return "", fmt.Errorf("qr code: %w", err)
	}
	size := len(m.bits) + 2*qrQuiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, size, size, size, size)
	for y, row := range m.bits {
		for x, dark := range row {
			if dark {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+qrQuiet, y+qrQuiet)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}

// qrDataURL is qrSVG as a data: URL for an img element (the pages' CSP allows img-src data:).
func qrDataURL(text string) (template.URL, error) {
	svg, err := qrSVG(text)
	if err != nil {
		return "", err
	}
	return template.URL("data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(svg))), nil
}

// matrixWriter keeps the code's modules (true is dark).
type matrixWriter struct{ bits [][]bool }

func (m *matrixWriter) Write(mat qrcode.Matrix) error {
	m.bits = mat.Bitmap()
	return nil
}

func (m *matrixWriter) Close() error { return nil }
