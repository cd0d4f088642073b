package forward

import (
	"net/http"
	"testing"
)

func TestIsNavigation(t *testing.T) {
	t.Parallel()
	const chromeAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
	cases := []struct {
		name    string
		method  string
		headers []string
		want    bool
	}{
		{"browser navigation", "GET", []string{"Sec-Fetch-Mode", "navigate", "Accept", chromeAccept}, true},
		{"HEAD navigation", "HEAD", []string{"Sec-Fetch-Mode", "navigate"}, true},
		{"old browser, Accept only", "GET", []string{"Accept", chromeAccept}, true},
		{"xhtml only", "GET", []string{"Accept", "application/xhtml+xml"}, true},
		{"fetch from a page", "GET", []string{"Sec-Fetch-Mode", "cors", "Accept", "*/*"}, false},
		{"fetch asking for HTML", "GET", []string{"Sec-Fetch-Mode", "cors", "Accept", "text/html"}, false},
		{"same-origin fetch", "GET", []string{"Sec-Fetch-Mode", "same-origin", "Accept", "text/html"}, false},
		{"image", "GET", []string{"Sec-Fetch-Mode", "no-cors", "Accept", "image/avif,image/webp,*/*"}, false},
		{"websocket", "GET", []string{"Sec-Fetch-Mode", "websocket"}, false},
		{"jQuery XHR", "GET", []string{"X-Requested-With", "XMLHttpRequest", "Accept", "text/html, */*; q=0.01"}, false},
		{"form POST is not answered with a redirect", "POST", []string{"Sec-Fetch-Mode", "navigate", "Accept", chromeAccept}, false},
		{"API client", "GET", []string{"Accept", "application/json"}, false},
		{"curl", "GET", []string{"Accept", "*/*"}, false},
		{"no headers", "GET", nil, false},
		{"html refused with q=0", "GET", []string{"Accept", "text/html;q=0, application/json"}, false},
		{"html with q=0.000", "GET", []string{"Accept", "text/html; q=0.000"}, false},
		{"html with q=0.5", "GET", []string{"Accept", "application/json, text/html ; q=0.5"}, true},
		{"mixed case media type", "GET", []string{"Accept", "Text/HTML"}, true},
		{"Accept split over two headers", "GET", []string{"Accept", "application/json", "Accept", "text/html"}, true},
	}
	for _, tc := range cases {
		h := http.Header{}
		for i := 0; i+1 < len(tc.headers); i += 2 {
			h.Add(tc.headers[i], tc.headers[i+1])
		}
		if got := IsNavigation(tc.method, h); got != tc.want {
			t.Errorf("%s: IsNavigation = %v, want %v", tc.name, got, tc.want)
		}
	}
}
