package templates

import (
	"context"
	"strings"
	"testing"

	"github.com/a-h/templ"
)

func render(t *testing.T, c templ.Component) string {
	t.Helper()
	var b strings.Builder
	if err := c.Render(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestClaimName_BreaksAfterEachColonAndEscapes(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"sub":                           "sub",
		"urn:zitadel:iam:user:metadata": "urn:<wbr>zitadel:<wbr>iam:<wbr>user:<wbr>metadata",
		"a:":                            "a:<wbr>",
		`<b>:"&'`:                       "&lt;b&gt;:<wbr>&#34;&amp;&#39;",
	}
	for in, want := range cases {
		if got := render(t, claimName(in)); got != want {
			t.Errorf("claimName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText_Escapes(t *testing.T) {
	t.Parallel()
	if got, want := render(t, text(`<script>"&'`)), "&lt;script&gt;&#34;&amp;&#39;"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
}
