package session

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"testing"
)

// realPayload is a session as the cookie store holds it after a sign-in at
// the development provider (its tokens are signed by a throwaway key).
func realPayload(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/session.json")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func sameSession(a, b Session) bool {
	ua, ub := a.Userinfo, b.Userinfo
	a.Userinfo, b.Userinfo = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(ua, ub)
}

// checkDecode holds decodeSession to encoding/json's result for data, and
// reports whether the fast path took it.
func checkDecode(t *testing.T, data []byte) bool {
	t.Helper()
	var want Session
	wantErr := json.Unmarshal(data, &want)
	var got Session
	fast := decodeFast(data, &got)
	if fast && wantErr != nil {
		t.Fatalf("fast path accepted %q, encoding/json says %v", data, wantErr)
	}
	if fast && !sameSession(got, want) {
		t.Fatalf("fast path decoded %q as\n%+v\nencoding/json as\n%+v", data, got, want)
	}
	var full Session
	err := decodeSession(data, &full)
	if (err == nil) != (wantErr == nil) || (err == nil && !sameSession(full, want)) {
		t.Fatalf("decodeSession(%q) = %+v, %v; encoding/json: %+v, %v", data, full, err, want, wantErr)
	}
	return fast
}

func TestDecodeSession_MatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	full, err := json.Marshal(&Session{ID: "id1", Subject: "sub", ProviderSID: "sid", IDToken: "a.b.c", AccessToken: "at",
		RefreshToken: "rt", TokenType: "Bearer", AccessExpiry: 1700000300, Userinfo: json.RawMessage(`{"email":"a@b.c","n":[1,{"x":"}"}]}`),
		CreatedAt: 1700000000, LastSeen: 1700000100, ExpiresAt: 1700003600})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data string
		fast bool // the fast path must take it (what Save writes)
	}{
		{"RealSession", string(realPayload(t)), true},
		{"EveryField", string(full), true},
		{"Minimal", `{"id":"x","sub":"s","iat":1,"seen":2,"exp":3}`, true},
		{"Empty", `{}`, true},
		{"Whitespace", " {\n\t\"id\" : \"x\" ,\r\n \"exp\" : -5 } ", true},
		{"DuplicateKeyLastWins", `{"id":"a","id":"b"}`, true},
		{"UserinfoString", `{"id":"x","ui":"a\"b"}`, true},
		{"UserinfoArray", `{"ui":[1,2],"id":"x"}`, true},
		{"Escapes", `{"id":"a\u0041\n"}`, false},
		{"NonASCII", `{"sub":"zoë"}`, false},
		{"InvalidUTF8", "{\"sub\":\"\xff\"}", false},
		{"Null", `{"id":null}`, false},
		{"UserinfoNull", `{"id":"x","ui":null}`, false},
		{"CaseFoldedKey", `{"ID":"x"}`, false},
		{"UnknownKey", `{"id":"x","extra":1}`, false},
		{"Float", `{"exp":1.5}`, false},
		{"Exponent", `{"exp":1e3}`, false},
		{"LeadingZero", `{"exp":01}`, false},
		{"Overflow", `{"exp":99999999999999999999}`, false},
		{"StringForInt", `{"exp":"1"}`, false},
		{"IntForString", `{"id":1}`, false},
		{"BadUserinfo", `{"ui":{"a":}}`, false},
		{"Truncated", `{"id":"x"`, false},
		{"TrailingGarbage", `{"id":"x"} x`, false},
		{"TrailingComma", `{"id":"x",}`, false},
		{"NotAnObject", `["id"]`, false},
		{"Nothing", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if fast := checkDecode(t, []byte(tc.data)); fast != tc.fast {
				t.Errorf("fast path taken = %v, want %v", fast, tc.fast)
			}
		})
	}
}

func FuzzDecodeSession(f *testing.F) {
	f.Add(realPayload(f))
	f.Add([]byte(`{"id":"x","ui":{"a":[1,"]"]},"exp":3}`))
	f.Add([]byte(`{"id":"a\"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}

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
	got, ok := cookieValue(r, "gatehouse")
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
