package bilingual

import "testing"

func TestPick(t *testing.T) {
	for _, tc := range []struct{ chosen, accept, want string }{
		{"", "en-US,en;q=0.9", En},
		{"", "zh-TW,zh;q=0.9", Zh},
		{"", "zh-CN", Zh},
		{"", "fr", Zh},
		{"", "", Zh},
		{"", "garbage;;", Zh},
		{En, "zh-TW", En},
		{Zh, "en", Zh},
		{"de", "en", En},
	} {
		if got := Pick(tc.chosen, tc.accept); got != tc.want {
			t.Errorf("Pick(%q, %q) = %q, want %q", tc.chosen, tc.accept, got, tc.want)
		}
	}
}

func TestCatalogue(t *testing.T) {
	c := Catalogue{"hi": {"你好，%s", "Hello, %s"}}
	for _, tc := range []struct{ lang, key, want string }{
		{Zh, "hi", "你好，A"}, {En, "hi", "Hello, A"}, {En, "nope", "!nope!"},
	} {
		if got := c.T(tc.lang, tc.key, "A"); got != tc.want {
			t.Errorf("T(%s, %s) = %q, want %q", tc.lang, tc.key, got, tc.want)
		}
	}
}
