package templates

import (
	"context"
	"io"
	"strings"

	"github.com/a-h/templ"
)

// text renders a string as escaped HTML text, as { s } does, but without
// the fmt.Sprint (two allocations) that templ v0.3.1100 spends on every
// string expression in templ.JoinStringErrs. The profile page's claims
// table writes hundreds of them; elsewhere { s } is fine.
type text string

func (t text) Render(_ context.Context, w io.Writer) error {
	_, err := io.WriteString(w, templ.EscapeString(string(t)))
	return err
}

// claimName renders a claim name with a <wbr> after each ':', so long URNs
// wrap there.
type claimName string

func (n claimName) Render(_ context.Context, w io.Writer) error {
	s := string(n)
	for {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(w, templ.EscapeString(s[:i+1])); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "<wbr>"); err != nil {
			return err
		}
		s = s[i+1:]
	}
	_, err := io.WriteString(w, templ.EscapeString(s))
	return err
}
