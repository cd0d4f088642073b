package config_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

func valid() map[string]string {
	return map[string]string{
		"SESSION_SECRET":       "0123456789abcdef0123456789abcdef-secret",
		"ZITADEL_DOMAIN":       "https://my-instance.zitadel.cloud",
		"ZITADEL_CLIENT_ID":    "123456789@gatehouse",
		"ZITADEL_CALLBACK_URL": "https://app.example.com/auth/callback",
	}
}

func load(env map[string]string, dotenv map[string]string) (config.Config, error) {
	return config.Load(context.Background(), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}, dotenv, nil)
}

func TestLoad_ProfilerNeedsTheAdminListener(t *testing.T) {
	t.Parallel()
	env := valid()
	env["ADMIN_PPROF"] = "true"
	if c, err := load(env, nil); err != nil || !c.AdminPprof {
		t.Fatalf("ADMIN_PPROF=true with the default admin listener: %v, %v", c.AdminPprof, err)
	}
	env["ADMIN_ADDR"] = "off"
	_, err := load(env, nil)
	var p config.Problems
	if !errors.As(err, &p) || len(p) != 1 || !strings.HasPrefix(p[0], "ADMIN_PPROF: needs the admin listener") {
		t.Fatalf("ADMIN_PPROF=true with ADMIN_ADDR=off: %v", err)
	}
}

func TestLoad_ValidConfigGetsDefaults(t *testing.T) {
	t.Parallel()
	c, err := load(valid(), nil)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.Port != 3000 || c.SessionDuration != time.Hour || c.SessionIdleTimeout != time.Hour || c.SessionStore != "cookie" ||
		c.PostLoginURL != "/profile" || c.AdminRole != "admin" || c.ShutdownDelay != 5*time.Second || c.ShutdownTimeout != 20*time.Second ||
		c.ProviderTimeout != 5*time.Second {
		t.Errorf("defaults wrong: %+v", c)
	}
	if c.PostLogoutURL != "https://app.example.com/auth/logout/callback" {
		t.Errorf("PostLogoutURL = %q, want it derived from the callback URL", c.PostLogoutURL)
	}
	if strings.Join(c.Scopes, " ") != config.DefaultScopes {
		t.Errorf("Scopes = %v", c.Scopes)
	}
	if !c.SecureCookies() {
		t.Error("https callback must mean Secure cookies")
	}
}

func TestLoad_EachProblemNamesItsVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		variable, value string // value "" with unset=true removes it
		unset           bool
		want            string
	}{
		{"SESSION_SECRET", "", true, "SESSION_SECRET: is required"},
		{"SESSION_SECRET", "short", false, "SESSION_SECRET: is 5 bytes long; it must be at least 32"},
		{"SESSION_SECRET", config.PlaceholderSecret, false, "SESSION_SECRET: is still the placeholder"},
		{"SESSION_SECRET_PREVIOUS", "short", false, "SESSION_SECRET_PREVIOUS: is 5 bytes long"},
		{"ZITADEL_DOMAIN", "", true, "ZITADEL_DOMAIN: is required"},
		{"ZITADEL_DOMAIN", "my-instance.zitadel.cloud", false, "ZITADEL_DOMAIN: must start with https://"},
		{"ZITADEL_DOMAIN", "https://user:pw@x.zitadel.cloud", false, "ZITADEL_DOMAIN: must not carry credentials"},
		{"ZITADEL_CLIENT_ID", "", true, "ZITADEL_CLIENT_ID: is required"},
		{"ZITADEL_CALLBACK_URL", "", true, "ZITADEL_CALLBACK_URL: is required"},
		{"ZITADEL_CALLBACK_URL", "https://app.example.com/callback", false, "ZITADEL_CALLBACK_URL: must end in /auth/callback"},
		{"ZITADEL_POST_LOGIN_URL", "https://evil.example", false, "ZITADEL_POST_LOGIN_URL: must be a path on this site"},
		{"ZITADEL_POST_LOGIN_URL", "//evil.example", false, "ZITADEL_POST_LOGIN_URL: must be a path on this site"},
		{"ZITADEL_POST_LOGOUT_URL", "not a url", false, "ZITADEL_POST_LOGOUT_URL: must start with https://"},
		{"ZITADEL_SCOPES", "profile email", false, "ZITADEL_SCOPES: must include openid"},
		{"PORT", "http", false, "PORT: must be a port number"},
		{"PORT", "70000", false, "PORT: must be a port number"},
		{"PORT", "-1", false, "PORT: must be a port number"},
		{"SESSION_DURATION", "1h", false, "SESSION_DURATION: must be a whole number of seconds"},
		{"SESSION_DURATION", "0", false, "SESSION_DURATION: must be a whole number of seconds greater than 0"},
		{"SESSION_IDLE_TIMEOUT", "-5", false, "SESSION_IDLE_TIMEOUT: must be a whole number of seconds"},
		{"SESSION_STORE", "postgres", false, "SESSION_STORE: must be cookie, redis or memory"},
		{"SESSION_STORE", "redis", false, "REDIS_URL: is required when SESSION_STORE=redis"},
		{"LOG_FORMAT", "xml", false, "LOG_FORMAT: must be json or text"},
		{"LOG_LEVEL", "verbose", false, "LOG_LEVEL: must be debug, info, warn or error"},
		{"SHUTDOWN_DELAY", "5", false, "SHUTDOWN_DELAY: must be a duration"},
		{"SHUTDOWN_TIMEOUT", "soon", false, "SHUTDOWN_TIMEOUT: must be a duration"},
		{"PROVIDER_TIMEOUT", "5", false, "PROVIDER_TIMEOUT: must be a duration from 1s to 25s"},
		{"PROVIDER_TIMEOUT", "500ms", false, "PROVIDER_TIMEOUT: must be a duration from 1s to 25s"},
		{"PROVIDER_TIMEOUT", "30s", false, "PROVIDER_TIMEOUT: must be a duration from 1s to 25s (the answer must reach the browser"},
		{"ADMIN_ADDR", "9090", false, "ADMIN_ADDR: must be host:port"},
		{"ADMIN_ADDR", ":3000", false, "ADMIN_ADDR: must not use the public PORT"},
		{"ADMIN_PPROF", "yes please", false, "ADMIN_PPROF: must be true or false"},
		{"ADMIN_ROLE", "admin role", false, "ADMIN_ROLE: must be a ZITADEL role key"},
		{"TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr", false, `TRUSTED_PROXIES: "not-a-cidr" is not a CIDR`},
		{"RATE_LIMIT_PER_MINUTE", "-1", false, "RATE_LIMIT_PER_MINUTE: must be a whole number"},
		{"RATE_LIMIT_BURST", "0", false, "RATE_LIMIT_BURST: must be at least 1 while RATE_LIMIT_PER_MINUTE is on"},
		{"TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0", false, `TRUSTED_PROXIES: "0.0.0.0/0" would trust every client`},
		{"TRUSTED_PROXIES", "::/0", false, `TRUSTED_PROXIES: "::/0" would trust every client`},
		{"TRUSTED_PROXIES", "::ffff:10.0.0.0/104", false, `TRUSTED_PROXIES: "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 address`},
		{"TRUSTED_PROXIES", "::ffff:10.0.0.1", false, `TRUSTED_PROXIES: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address`},
		{"ZITADEL_CALLBACK_URL", "HTTPS://app.example.com/auth/callback", false, "ZITADEL_CALLBACK_URL: must have its scheme and host in lower case"},
		{"ZITADEL_CALLBACK_URL", "https://App.example.com/auth/callback", false, "ZITADEL_CALLBACK_URL: must have its scheme and host in lower case"},
		{"ZITADEL_DOMAIN", "Https://example.zitadel.cloud", false, "ZITADEL_DOMAIN: must have its scheme and host in lower case"},
		{"SESSION_DURATION", "10000000000", false, "SESSION_DURATION: must be at most 31622400 seconds"},
		{"SESSION_IDLE_TIMEOUT", "18446744074", false, "SESSION_IDLE_TIMEOUT: must be at most 31622400 seconds"},
		{"SESSION_SECRET_PREVIOUS", config.PlaceholderSecret, false, "SESSION_SECRET_PREVIOUS: is the placeholder"},
		{"ZITADEL_CLIENT_SECRET", "   ", false, "ZITADEL_CLIENT_SECRET: is only whitespace"},
		{"ALLOWED_REDIRECT_HOSTS", "https://grafana.example.com", false, `ALLOWED_REDIRECT_HOSTS: "https://grafana.example.com": give a host name`},
		{"ALLOWED_REDIRECT_HOSTS", "*.example.com", false, `ALLOWED_REDIRECT_HOSTS: "*.example.com": no wildcards`},
		{"ALLOWED_REDIRECT_HOSTS", "grafana.example.com", false, `ALLOWED_REDIRECT_HOSTS: "grafana.example.com" needs COOKIE_DOMAIN`},
		{"ALLOWED_REDIRECT_HOSTS", "grafana.exämple.com", false, `ALLOWED_REDIRECT_HOSTS: "grafana.exämple.com": write internationalised names in their xn-- (punycode) form`},
		{"ALLOWED_REDIRECT_HOSTS", "app.example.com.", false, `ALLOWED_REDIRECT_HOSTS: "app.example.com.": not a host name`},
		{"ALLOWED_REDIRECT_HOSTS", "app.example.com:99999", false, `ALLOWED_REDIRECT_HOSTS: "app.example.com:99999": the port must be`},
		{"ALLOWED_REDIRECT_HOSTS", ".com", false, `ALLOWED_REDIRECT_HOSTS: ".com": would allow every host under a top-level domain`},
		{"COOKIE_DOMAIN", "com", false, `COOKIE_DOMAIN: must be a domain such as .example.com`},
		{"COOKIE_DOMAIN", ".co.uk", false, `COOKIE_DOMAIN: ".co.uk" is a public suffix`},
		{"COOKIE_DOMAIN", ".example.org", false, `COOKIE_DOMAIN: ".example.org" does not contain the host of ZITADEL_CALLBACK_URL (app.example.com)`},
		{"COOKIE_DOMAIN", "https://example.com", false, `COOKIE_DOMAIN: must be a domain such as .example.com`},
		{"FORWARD_ACCESS_TOKEN", "yes please", false, "FORWARD_ACCESS_TOKEN: must be true or false"},
		{"SIGNIN_PAGE", "never", false, "SIGNIN_PAGE: must be show or skip"},
	}
	for _, tc := range cases {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			env := valid()
			if tc.unset {
				delete(env, tc.variable)
			} else {
				env[tc.variable] = tc.value
			}
			_, err := load(env, nil)
			var p config.Problems
			if !errors.As(err, &p) {
				t.Fatalf("Load() error = %v, want Problems", err)
			}
			if len(p) != 1 || !strings.HasPrefix(p[0], tc.want) {
				t.Fatalf("problems = %q, want exactly one starting with %q", p, tc.want)
			}
			if tc.value != "" && strings.Contains(tc.variable, "SECRET") && strings.Contains(p[0], tc.value) {
				t.Errorf("the message repeats the secret value: %q", p[0])
			}
		})
	}
}

func TestLoad_ForwardAuthSettings(t *testing.T) {
	t.Parallel()
	env := valid()
	env["COOKIE_DOMAIN"] = ".Example.com"
	env["ALLOWED_REDIRECT_HOSTS"] = "grafana.example.com, .tools.example.com,app.example.com:8443"
	env["FORWARD_ACCESS_TOKEN"] = "true"
	env["SIGNIN_PAGE"] = "Skip"
	c, err := load(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.CookieDomain != "example.com" || c.SessionCookiePrefix() != "__Secure-" {
		t.Errorf("CookieDomain = %q, prefix %q; want example.com and __Secure-", c.CookieDomain, c.SessionCookiePrefix())
	}
	var hosts []string
	for _, h := range c.AllowedRedirectHosts {
		hosts = append(hosts, h.String())
	}
	if got := strings.Join(hosts, " "); got != "grafana.example.com .tools.example.com app.example.com:8443" {
		t.Errorf("AllowedRedirectHosts = %s", got)
	}
	if !c.ForwardAccessToken || c.SigninPage != "skip" {
		t.Errorf("ForwardAccessToken = %v, SigninPage = %q", c.ForwardAccessToken, c.SigninPage)
	}
	if c.PublicOrigin() != "https://app.example.com" {
		t.Errorf("PublicOrigin = %q", c.PublicOrigin())
	}

	// A host the cookie cannot reach is refused, naming it; the others pass.
	env["ALLOWED_REDIRECT_HOSTS"] = "grafana.example.com,wiki.example.org"
	_, err = load(env, nil)
	var p config.Problems
	if !errors.As(err, &p) || len(p) != 1 || !strings.HasPrefix(p[0], `ALLOWED_REDIRECT_HOSTS: "wiki.example.org" is outside COOKIE_DOMAIN example.com`) {
		t.Fatalf("problems = %q", err)
	}
}

func TestLoad_CookiePrefixFollowsSchemeAndDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ callback, domain, allowed, want string }{
		{"https://app.example.com/auth/callback", "", "", "__Host-"},
		{"https://app.example.com/auth/callback", "example.com", "", "__Secure-"},
		{"http://localhost:3000/auth/callback", "", "", ""},
		// Cookies ignore ports: an app on Gatehouse's host name needs no domain.
		{"http://127.0.0.1:3000/auth/callback", "", "127.0.0.1:8080", ""},
	} {
		env := valid()
		env["ZITADEL_CALLBACK_URL"] = tc.callback
		env["COOKIE_DOMAIN"] = tc.domain
		env["ALLOWED_REDIRECT_HOSTS"] = tc.allowed
		c, err := load(env, nil)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if got := c.SessionCookiePrefix(); got != tc.want {
			t.Errorf("%+v: prefix %q, want %q", tc, got, tc.want)
		}
	}
}

func TestLoad_ReportsAllProblemsAtOnce(t *testing.T) {
	t.Parallel()
	_, err := load(map[string]string{"PORT": "x", "LOG_FORMAT": "xml"}, nil)
	var p config.Problems
	if !errors.As(err, &p) {
		t.Fatalf("error = %v", err)
	}
	for _, v := range []string{"PORT", "SESSION_SECRET", "ZITADEL_DOMAIN", "ZITADEL_CLIENT_ID", "ZITADEL_CALLBACK_URL", "LOG_FORMAT"} {
		found := false
		for _, line := range p {
			found = found || strings.HasPrefix(line, v+": ")
		}
		if !found {
			t.Errorf("no problem reported for %s in %q", v, p)
		}
	}
}

// PORT=0 lets the kernel pick the public port (tests read it from the
// "listening" log line); an admin listener on :0 is then no clash.
func TestLoad_PortZeroMeansAnyFreePort(t *testing.T) {
	t.Parallel()
	env := valid()
	env["PORT"], env["ADMIN_ADDR"] = "0", "127.0.0.1:0"
	c, err := load(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 0 || c.AdminAddr != "127.0.0.1:0" {
		t.Fatalf("Port = %d, AdminAddr = %q", c.Port, c.AdminAddr)
	}
}

func TestLoad_EnvironmentWinsOverDotenv(t *testing.T) {
	t.Parallel()
	env := valid()
	env["PORT"] = "8080"
	c, err := load(env, map[string]string{"PORT": "9999", "ADMIN_ROLE": "ops", "SESSION_DURATION": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.AdminRole != "ops" {
		t.Fatalf("Port = %d (want env 8080), AdminRole = %q (want .env ops)", c.Port, c.AdminRole)
	}
	if c.SessionDuration != time.Hour {
		t.Fatalf("SESSION_DURATION= (empty in .env) gave %v, want the default", c.SessionDuration)
	}
}

func TestParseDotenv(t *testing.T) {
	t.Parallel()
	in := "# comment\n\nexport A=1\nB = \"two words\"\nC='$NOT_EXPANDED'\nD=value # trailing\n"
	got, err := config.ParseDotenv(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "two words", "C": "$NOT_EXPANDED", "D": "value"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := config.ParseDotenv(strings.NewReader("NOEQUALS\n")); err == nil {
		t.Error("a line without = must be an error")
	}
}

// TestReadme_ConfigurationTableNamesEveryVariable: the README's table is
// where a newcomer looks a setting up; a variable missing there is one
// nobody finds (ADMIN_PPROF was).
func TestReadme_ConfigurationTableNamesEveryVariable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "| `") {
			rows.WriteString(line + "\n")
		}
	}
	for _, v := range config.Variables() {
		if !strings.Contains(rows.String(), "`"+v+"`") {
			t.Errorf("README.md's configuration table has no row for %s", v)
		}
	}
}

func TestEnvExample_DocumentsEveryVariableAndParses(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals, err := config.ParseDotenv(f)
	if err != nil {
		t.Fatalf(".env.example does not parse: %v", err)
	}
	for _, v := range config.Variables() {
		if _, ok := vals[v]; !ok {
			t.Errorf(".env.example does not document %s", v)
		}
	}
	// As shipped, it must be refused for its placeholder secret.
	_, err = load(nil, vals)
	if err == nil || !strings.Contains(err.Error(), "SESSION_SECRET: is still the placeholder") {
		t.Errorf("shipped .env.example: %v", err)
	}
}
