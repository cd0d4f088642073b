package session

import (
	"net/http"
	"testing"
)

func TestCookieValue_MatchesNetHTTP(t *testing.T) {
	t.Parallel()
	for _, h := range [][]string{
		nil,
		{"gatehouse=abc"},
		{"a=1; gatehouse=abc; b=2"},
		{"a=1", "gatehouse=abc"},
		{"gatehouse=\"abc\""},
		{"gatehouse=ab\\c; gatehouse=second"},
		{"gatehouse=bad value; gatehouse=good"},
		{" gatehouse = abc "},
		{"gatehouse"},
		{"gatehouse="},
		{"gatehouse-flow-x=1"},
		{";;gatehouse=abc;;"},
		{"xgatehouse=1; gatehousex=2"},
		{"gatehouse=a\"b; gatehouse=ok"},
		{"gatehouse=caf\xc3\xa9; gatehouse=ok"},
		{"gatehouse=\"\"abc\"\"; gatehouse=ok"},
	} {
		if !sameCookie(h) {
			t.Errorf("Cookie headers %q: cookieValue differs from net/http", h)
		}
	}
}

func sameCookie(lines []string) bool {
	r := &http.Request{Header: http.Header{"Cookie": lines}}
	got, ok := cookieValue(r, "gatehouse", func(string) bool { return false })
	c, err := r.Cookie("gatehouse")
	if err != nil {
		return !ok
	}
	return ok && got == c.Value
}

func FuzzCookieValue(f *testing.F) {
	f.Add("a=1; gatehouse=abc", "gatehouse=\"x\"")
	f.Fuzz(func(t *testing.T, a, b string) {
		if !sameCookie([]string{a, b}) {
			t.Fatalf("Cookie headers %q, %q: cookieValue differs from net/http", a, b)
		}
	})
}
