package testenv_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// docs/FORWARD-AUTH.md promises that its proxy configurations are what
// the tests run. These tests hold it to that: the nginx and Caddy blocks
// must say, directive by directive, what the lab's real proxies are
// configured with (testenv.NginxProtected, testenv.CaddyProtected), and the
// Traefik and Envoy blocks, which no test runs, must name every identity
// header and the inputs Gatehouse reads. Comments, indentation and the
// host names (gatehouse:3000, grafana:3000) are the docs' own.

const forwardAuthDoc = "../../docs/FORWARD-AUTH.md"

// docBlock is the first fenced block of language lang after heading.
func docBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile(forwardAuthDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no heading %q", forwardAuthDoc, heading)
	}
	rest := doc[i:]
	start := strings.Index(rest, "\n```"+lang+"\n")
	if start < 0 {
		t.Fatalf("%s: no ```%s block after %q", forwardAuthDoc, lang, heading)
	}
	rest = rest[start+len("\n```"+lang+"\n"):]
	end := strings.Index(rest, "\n```")
	if end < 0 {
		t.Fatalf("%s: the ```%s block after %q does not end", forwardAuthDoc, lang, heading)
	}
	return rest[:end]
}

// directives are config's lines without comments, blank lines and
// indentation, with runs of spaces made one.
func directives(config string) []string {
	var out []string
	for _, line := range strings.Split(config, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// block is the directives from the line opening (exactly) through its
// closing brace.
func block(t *testing.T, lines []string, opening string) []string {
	t.Helper()
	i := slices.Index(lines, opening)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", opening, strings.Join(lines, "\n"))
	}
	depth := 0
	for j := i; j < len(lines); j++ {
		depth += strings.Count(lines[j], "{") - strings.Count(lines[j], "}")
		if depth == 0 {
			return lines[i : j+1]
		}
	}
	t.Fatalf("%q is not closed", opening)
	return nil
}

func sameDirectives(t *testing.T, what string, doc, tested []string) {
	t.Helper()
	if !slices.Equal(doc, tested) {
		t.Errorf("docs/FORWARD-AUTH.md's %s differs from the tested configuration:\n--- docs\n%s\n--- tested\n%s",
			what, strings.Join(doc, "\n"), strings.Join(tested, "\n"))
	}
}

func TestDocs_NginxBlockIsTheTestedConfiguration(t *testing.T) {
	t.Parallel()
	doc := directives(docBlock(t, "### nginx", "nginx"))
	tested := directives(testenv.NginxUpstream("gatehouse:3000") + testenv.NginxProtected("grafana:3000"))
	sameDirectives(t, "upstream", doc[:1], tested[:1])
	for _, loc := range []string{"location = /_gatehouse_verify {", "location = /_gatehouse_answer {", "location / {"} {
		sameDirectives(t, loc, block(t, doc, loc), block(t, tested, loc))
	}
	// The docs shorten the admin location to its rules ("the same lines").
	if d, w := block(t, doc, "location /admin/ {")[1], block(t, tested, "location /admin/ {")[1]; d != w {
		t.Errorf("docs' /admin/ location starts with %q, the tested one with %q", d, w)
	}
}

func TestDocs_CaddyBlockIsTheTestedConfiguration(t *testing.T) {
	t.Parallel()
	doc := directives(docBlock(t, "### Caddy", "caddyfile"))
	tested := directives(testenv.CaddyProtected("gatehouse:3000", "grafana:3000"))
	for _, line := range []string{"@admin path /admin /admin/*", "@other not path /admin /admin/*", "reverse_proxy grafana:3000"} {
		if !slices.Contains(tested, line) {
			t.Fatalf("the tested configuration has no %q: update this test", line)
		}
		if !slices.Contains(doc, line) {
			t.Errorf("docs' Caddy block lacks %q", line)
		}
	}
	admin := "reverse_proxy @admin gatehouse:3000 {"
	sameDirectives(t, admin, block(t, doc, admin), block(t, tested, admin))
	// The docs shorten the second one to its rules ("the same lines").
	other := "reverse_proxy @other gatehouse:3000 {"
	d, w := block(t, doc, other), block(t, tested, other)
	sameDirectives(t, other+" (its first lines)", d[:3], w[:3])
}

func TestDocs_TraefikAndEnvoyBlocksNameWhatGatehouseNeeds(t *testing.T) {
	t.Parallel()
	traefik := strings.Join(directives(docBlock(t, "### Traefik", "yaml")), " ")
	m := regexp.MustCompile(`authResponseHeaders: \[([^\]]*)\]`).FindStringSubmatch(traefik)
	if m == nil {
		t.Fatal("docs' Traefik block has no authResponseHeaders list")
	}
	var listed []string
	for _, h := range strings.Split(m[1], ",") {
		listed = append(listed, strings.TrimSpace(h))
	}
	if !slices.Equal(listed, forward.IdentityHeaders[:]) {
		t.Errorf("docs' Traefik authResponseHeaders = %v, want every identity header %v (a header not copied arrives as the client wrote it)", listed, forward.IdentityHeaders)
	}
	for _, want := range []string{"trustForwardHeader: false", "address: http://gatehouse:3000/auth/forward?roles=admin", "address: http://gatehouse:3000/auth/forward?"} {
		if !strings.Contains(traefik, want) {
			t.Errorf("docs' Traefik block lacks %q", want)
		}
	}

	envoy := strings.Join(directives(docBlock(t, "### Envoy", "yaml")), " ")
	for _, want := range []string{
		// What Gatehouse reads besides Host, method and path.
		"{exact: cookie}", "{exact: accept}", "{exact: sec-fetch-mode}", "{exact: x-forwarded-proto}", "{exact: x-forwarded-for}",
		// Every identity header to the upstream (the X-Auth-Request- ones by prefix), and a refreshed cookie to the browser.
		"{prefix: x-auth-request-}", "{exact: " + strings.ToLower(forward.HeaderAssertion) + "}", "{exact: set-cookie}",
		"path_prefix: /auth/forward;roles=admin",
	} {
		if !strings.Contains(envoy, want) {
			t.Errorf("docs' Envoy block lacks %q", want)
		}
	}
	for _, h := range forward.IdentityHeaders {
		if h != forward.HeaderAssertion && !strings.HasPrefix(h, "X-Auth-Request-") {
			t.Errorf("identity header %s is matched by neither of the Envoy block's patterns", h)
		}
	}
}
