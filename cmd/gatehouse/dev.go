//go:build !production

package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
)

// The development identity provider is compiled into every build except
// the production one (-tags production, as the Dockerfile builds): the
// shipped image cannot be started with demo users, and it leaves out the
// provider's code (zitadel/oidc's op package and its html/template use,
// which turns off the linker's dead-method elimination for the whole binary).

// devProvider is the running development provider.
type devProvider struct {
	ln    net.Listener
	idp   *devidp.Provider
	keyID string // the generated application key's ID (-dev-key), or ""
	// appLn is the app's own listener, opened first (see startDevProvider);
	// nil when PORT is invalid, which config.Load then reports.
	appLn net.Listener
}

func (d *devProvider) serve() {
	srv := &http.Server{Handler: d.idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	_ = srv.Serve(d.ln)
}

func (d *devProvider) close() {
	_ = d.ln.Close()
	if d.appLn != nil {
		_ = d.appLn.Close() // after app.Run closed it, a no-op
	}
}

// appListener is the app's listener when -dev opened it.
func (d *devProvider) appListener() net.Listener { return d.appLn }

// startDevProvider starts listening for the development provider and
// returns the configuration that points the app at it. It exists only
// behind the -dev flag: missing configuration never enables it.
//
// With withKey, the provider generates an application key for the client
// (as ZITADEL does for an app with the authentication method "JWT"),
// knows only its public half, and the app gets the key JSON as
// ZITADEL_KEY: every call to the token and introspection endpoints is then
// authenticated with private_key_jwt.
//
// The app's listener (on appHost) is opened first: the provider registers
// the app's callback URL, which must carry the real port, also when PORT=0
// lets the kernel pick it.
func startDevProvider(addr, appHost string, withKey bool, lookup func(string) (string, bool), dotenv map[string]string, stderr io.Writer) (*devProvider, config.Overrides, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("-dev-idp-addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, nil, fmt.Errorf("-dev-idp-addr must be a loopback address, got %q", addr)
	}
	get := func(k string) string {
		if v, ok := lookup(k); ok {
			return v
		}
		return dotenv[k]
	}
	port, portSet := 3000, get("PORT")
	var appLn net.Listener
	if p, err := strconv.Atoi(portSet); portSet == "" || (err == nil && p >= 0 && p <= 65535) {
		if portSet != "" {
			port = p
		}
		if appLn, err = net.Listen("tcp", net.JoinHostPort(appHost, strconv.Itoa(port))); err != nil {
			return nil, nil, fmt.Errorf("listen: %w", err)
		}
		port = appLn.Addr().(*net.TCPAddr).Port
	}
	ln, issuer, err := devidp.Listen(addr)
	if err != nil {
		closeIf(appLn)
		return nil, nil, err
	}
	// ZITADEL_DOMAIN naming this very provider (as the Tiltfile sets it) is no conflict.
	if v := get("ZITADEL_DOMAIN"); v != "" && v != issuer && !strings.Contains(v, "your-instance") {
		fmt.Fprintln(stderr, "gatehouse: -dev ignores ZITADEL_DOMAIN and the other ZITADEL_* settings but ZITADEL_POST_LOGIN_URL: the development provider replaces them")
	}
	app := "http://localhost:" + strconv.Itoa(port)
	ov := config.Overrides{
		"ZITADEL_DOMAIN":          issuer,
		"ZITADEL_CLIENT_ID":       "gatehouse-dev",
		"ZITADEL_CLIENT_SECRET":   "",
		"ZITADEL_KEY_FILE":        "",
		"ZITADEL_KEY":             "",
		"ZITADEL_CALLBACK_URL":    app + "/auth/callback",
		"ZITADEL_POST_LOGOUT_URL": app + "/auth/logout/callback",
		// A real project's ID would make the roles be read from a project
		// the development provider never grants; real scopes may ask for
		// that project too. The defaults fit the development provider.
		"ZITADEL_PROJECT_ID": "",
		"ZITADEL_SCOPES":     "",
	}
	if s := get("SESSION_SECRET"); s == "" || s == config.PlaceholderSecret {
		ov["SESSION_SECRET"] = randomSecret() // sessions end on restart in dev: fine
	}
	if get("LOG_FORMAT") == "" {
		ov["LOG_FORMAT"] = "text"
	}
	if get("ADMIN_ADDR") == "" {
		ov["ADMIN_ADDR"] = "127.0.0.1:9090"
	}
	if appLn != nil {
		ov["PORT"] = strconv.Itoa(port) // the port the kernel picked for PORT=0
	}
	client := devidp.Client{
		ID:                     "gatehouse-dev",
		RedirectURIs:           []string{app + "/auth/callback"},
		PostLogoutRedirectURIs: []string{app + "/auth/logout/callback"},
	}
	keyID := ""
	if withKey {
		key, err := devidp.NewApplicationKey(client.ID)
		if err != nil {
			ln.Close()
			closeIf(appLn)
			return nil, nil, err
		}
		client.KeyID, client.PublicKey, keyID = key.KeyID, key.PublicKey, key.KeyID
		ov["ZITADEL_KEY"] = string(key.JSON)
	}
	idp, err := devidp.New(devidp.Options{Issuer: issuer, Clients: []devidp.Client{client}})
	if err != nil {
		ln.Close()
		closeIf(appLn)
		return nil, nil, err
	}
	return &devProvider{ln: ln, idp: idp, keyID: keyID, appLn: appLn}, ov, nil
}

func closeIf(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

func randomSecret() string {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (d *devProvider) printBanner(w io.Writer, cfg config.Config) {
	issuer := d.idp.Issuer()
	var b strings.Builder
	line := strings.Repeat("=", 78)
	fmt.Fprintln(&b, line)
	fmt.Fprintln(&b, "  DEVELOPMENT MODE - embedded identity provider. NEVER use -dev in production.")
	fmt.Fprintln(&b, line)
	fmt.Fprintf(&b, "  Open:              http://localhost:%d\n", cfg.Port)
	fmt.Fprintf(&b, "  Sign in as:        alice / %s   (has the %q role)\n", devidp.DemoPassword, "admin")
	fmt.Fprintf(&b, "                     bob   / %s   (no admin role)\n", devidp.DemoPassword)
	fmt.Fprintf(&b, "  Identity provider: %s (loopback only)\n", issuer)
	if d.keyID != "" {
		fmt.Fprintf(&b, "  Client auth:       private_key_jwt, application key %s (generated; -dev-key)\n", d.keyID)
	} else {
		fmt.Fprintln(&b, "  Client auth:       none, public PKCE client (-dev-key: private_key_jwt)")
	}
	fmt.Fprintln(&b, line)
	fmt.Fprint(w, b.String())
}
