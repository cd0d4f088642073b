package testenv

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/server"
)

// LabDomain is the lab's cookie domain: every lab host name ends in it
// and resolves to loopback (Browser.Resolve, Chromium's
// --host-resolver-rules).
const LabDomain = "gatehouse.test"

// ForwardLab is Gatehouse signing people in for two other apps, as in a
// cluster: a real provider, Gatehouse at login.gatehouse.test, and the echo
// upstream behind real nginx (auth_request) at app.gatehouse.test and real
// Caddy (forward_auth) at app2.gatehouse.test, each configured as
// docs/FORWARD-AUTH.md says. On both, "/admin/..." requires the admin
// role and everything else a session; the session cookie is shared
// through COOKIE_DOMAIN.
type ForwardLab struct {
	IdP   *IdP
	App   *App // Gatehouse
	Login string
	// Addr is Gatehouse's listen address (127.0.0.1:port), for proxies.
	Addr  string
	Echo  *Echo
	Nginx *Proxy
	Caddy *Proxy
	// NginxURL and CaddyURL are the apps' origins as browsers see them.
	NginxURL, CaddyURL string
}

// ForwardLabOptions tune the lab.
type ForwardLabOptions struct {
	Env     config.Overrides // extra Gatehouse settings (SESSION_STORE, SIGNIN_PAGE, ...)
	IdP     IdPOptions
	Options server.Options
}

// StartForwardLab starts the lab. Gatehouse's address is reserved first,
// so the proxies can be configured with it, and Gatehouse is configured
// with the proxies' hosts (ALLOWED_REDIRECT_HOSTS) once they listen.
func StartForwardLab(t testing.TB, o ForwardLabOptions) *ForwardLab {
	t.Helper()
	ln, _ := Listen(t)
	gatehouse := ln.Addr().String()
	_, port, _ := net.SplitHostPort(gatehouse)
	lab := &ForwardLab{Login: "http://login." + LabDomain + ":" + port, Addr: gatehouse, Echo: StartEcho(t)}
	lab.Nginx = StartNginx(t, NginxOptions{HTTP: NginxUpstream(gatehouse), Server: NginxProtected(lab.Echo.Addr)})
	lab.Caddy = StartCaddy(t, CaddyOptions{Site: CaddyProtected(gatehouse, lab.Echo.Addr)})
	lab.NginxURL = "http://app." + LabDomain + strings.TrimPrefix(lab.Nginx.Addr, "127.0.0.1")
	lab.CaddyURL = "http://app2." + LabDomain + strings.TrimPrefix(lab.Caddy.Addr, "127.0.0.1")

	o.IdP.AppURLs = append(o.IdP.AppURLs, lab.Login)
	lab.IdP = StartIdP(t, o.IdP)
	env := config.Overrides{
		"TRUSTED_PROXIES":        "127.0.0.1/32",
		"COOKIE_DOMAIN":          "." + LabDomain,
		"ALLOWED_REDIRECT_HOSTS": strings.TrimPrefix(lab.NginxURL, "http://") + "," + strings.TrimPrefix(lab.CaddyURL, "http://"),
	}
	for k, v := range o.Env {
		env[k] = v
	}
	lab.App = StartApp(t, ln, lab.Login, lab.IdP, AppOptions{Env: env, Options: o.Options}, true)
	return lab
}

// NginxUpstream is the http-block part of the documented nginx
// configuration: Gatehouse as an upstream (proxy_pass with a variable
// needs a name nginx knows without a resolver).
func NginxUpstream(gatehouse string) string {
	return fmt.Sprintf("  upstream gatehouse { server %s; }\n", gatehouse)
}

// NginxProtected is the documented nginx server configuration, with
// echo as the protected app: the two internal locations that ask
// Gatehouse, "/" for any signed-in user, "/admin/" for the admin role.
func NginxProtected(echo string) string {
	var b strings.Builder
	b.WriteString(`
    # Gatehouse decides (auth_request): 200, 401 or 403; the route's rules in $gatehouse_rules.
    location = /_gatehouse_verify {
      internal;
      proxy_pass http://gatehouse/auth/verify?$gatehouse_rules;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $http_host;   # else a client's own arrives: Gatehouse refuses a mismatch
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;   # the client, whom bearer tokens' introspection calls are charged to
    }
    # Gatehouse answers a refusal (error_page): a 302 to sign in for a page,
    # 401 for a script, the 403 page, and the 503 or 429 that auth_request
    # turns into a 500.
    location = /_gatehouse_answer {
      internal;
      proxy_pass http://gatehouse/auth/forward?$gatehouse_rules;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
`)
	for _, loc := range []struct{ path, rules string }{{"/", ""}, {"/admin/", "roles=admin"}} {
		fmt.Fprintf(&b, `
    location %s {
      set $gatehouse_rules "%s";
      auth_request /_gatehouse_verify;
      error_page 401 403 500 = /_gatehouse_answer;
%s      # A session refreshed during the decision: its new cookie to the browser.
      auth_request_set $gatehouse_cookie $upstream_http_set_cookie;
      add_header Set-Cookie $gatehouse_cookie always;
      proxy_pass http://%s;
    }
`, loc.path, loc.rules, NginxIdentityCopies("      "), echo)
	}
	return b.String()
}

// NginxIdentityCopies are the directives that copy every identity header
// from Gatehouse's answer into the request to the app (an empty value
// removes the client's own copy).
func NginxIdentityCopies(indent string) string {
	var b strings.Builder
	for _, h := range forward.IdentityHeaders {
		v := "$gatehouse_" + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(h, "X-Auth-Request-"), "X-Gatehouse-"), "-", "_"))
		fmt.Fprintf(&b, "%sauth_request_set %s $upstream_http_%s;\n%sproxy_set_header %s %s;\n",
			indent, v, strings.ToLower(strings.ReplaceAll(h, "-", "_")), indent, h, v)
	}
	return b.String()
}

// CaddyProtected is the documented Caddy configuration, with echo as the
// protected app: Caddy asks Gatehouse before every request ("/admin" and
// "/admin/*" with roles=admin: "/admin/*" alone leaves "/admin" itself to
// the other rules), in the expanded form of forward_auth that also hands
// a refreshed session's cookie to the browser.
func CaddyProtected(gatehouse, echo string) string {
	return fmt.Sprintf(`
			@admin path /admin /admin/*
			@other not path /admin /admin/*
%s%s			reverse_proxy %s
`, CaddyForwardAuth("@admin", gatehouse, "roles=admin"), CaddyForwardAuth("@other", gatehouse, ""), echo)
}

// CaddyForwardAuth is forward_auth written out as the reverse_proxy it
// stands for, plus copy_response_headers for Set-Cookie (forward_auth
// itself drops the auth answer's Set-Cookie on a 2xx: tested).
func CaddyForwardAuth(matcher, gatehouse, rules string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t\t\treverse_proxy %s %s {\n", matcher, gatehouse)
	fmt.Fprintf(&b, "\t\t\t\tmethod GET\n\t\t\t\trewrite /auth/forward?%s\n", rules)
	b.WriteString("\t\t\t\theader_up X-Forwarded-Method {method}\n\t\t\t\theader_up X-Forwarded-Uri {uri}\n")
	b.WriteString("\t\t\t\t@allowed status 2xx\n\t\t\t\thandle_response @allowed {\n")
	for _, h := range forward.IdentityHeaders {
		fmt.Fprintf(&b, "\t\t\t\t\trequest_header %s {rp.header.%s}\n", h, h)
	}
	b.WriteString("\t\t\t\t\tcopy_response_headers {\n\t\t\t\t\t\tinclude Set-Cookie\n\t\t\t\t\t}\n\t\t\t\t}\n\t\t\t}\n")
	return b.String()
}
